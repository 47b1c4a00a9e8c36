/*
 * master/tp_hostcheck.c: the host checker (see tp_hostcheck.h).
 *
 * A probe is one connection on the master's loop: resolve (IP literals
 * need no lookup), connect, write the request or the TCP commands, read
 * the status line or the expected bytes, close; a timer bounds the whole
 * probe (the check's timeout, else Tyk's 500 ms). At most
 * checker_pool_size probes are in flight; the rest wait for the next free
 * place in the same round. A check still probing when its next round
 * comes is not started twice. https:// check URLs are not probed yet
 * (skipped with a warning at load).
 */
#include <mbedtls/base64.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "tp_err.h"
#include "tp_hostcheck.h"
#include "tp_http.h"
#include "tp_json.h"
#include "tp_log.h"
#include "tp_master.h"
#include "tp_msgpack.h"
#include "tp_shm_hosts.h"
#include "tp_shm_limit.h"
#include "tp_time.h"
#include "tp_url.h"

#define DEFAULT_TIMEOUT_MS 500 /* Tyk's shared check client */
#define MAX_CMDS 16
#define READ_MAX 4096

typedef struct cmd_s {
    int expect; /* 0: send */
    char *msg;
    size_t len;
} cmd_t;

typedef struct probe_s probe_t;

typedef struct check_s {
    char *url; /* as written: the check's key */
    tp_url_t u;
    char *api_id, *org_id;
    int tcp;
    tp_buf_t request; /* HTTP: the whole request */
    cmd_t cmds[MAX_CMDS];
    int ncmds;
    uint64_t timeout_ms;
    int64_t expire_after; /* expire_utime_after, s */
    /* state */
    int64_t count; /* Tyk's failure count */
    int down;
    int last_code;
    int64_t last_ms;
    int64_t last_us; /* wall clock of the last result */
    uint64_t checks, failures;
    char last_err[128];
    probe_t *probe; /* in flight */
    int seen;       /* still in the generation (sync) */
} check_t;

struct probe_s {
    tp_hostcheck_t *hc;
    check_t *check; /* NULL when the check went away meanwhile */
    uv_getaddrinfo_t gai;
    uv_connect_t conn;
    uv_write_t wreq;
    uv_tcp_t tcp;
    uv_timer_t timer;
    int open_handles;
    int done;
    int step; /* TCP: the command running */
    uint64_t t0;
    char buf[READ_MAX];
    size_t got;
    tp_buf_t out; /* what is being written: a reload may free the check meanwhile */
};

struct tp_hostcheck_s {
    tp_master_t *m;
    check_t **v;
    size_t n;
    size_t next; /* of this round, the next to start */
    int inflight;
    int pool;
    int64_t sample;
    int64_t time_wait;
    int analytics;
    int leader; /* this node polls (holds the election key) */
    char elect_key[160];
    uv_timer_t tick;
    uv_timer_t elect;
    tp_redis_t *redis;
    tp_buf_t rec;
    uint64_t synced; /* check lists taken (a follower's reply names its check by index) */
    int stopped;
    int handles;  /* its timers not yet closed */
    int rpending; /* Redis commands whose callback reads it */
};

/* A stopped checker goes once nothing refers to it any more. */
static void maybe_free(tp_hostcheck_t *hc)
{
    if (hc->stopped && hc->handles == 0 && hc->inflight == 0 && hc->rpending == 0)
        free(hc);
}

/* ---- loading the check lists ------------------------------------------------- */

static void check_free(check_t *c)
{
    free(c->url);
    tp_url_free(&c->u);
    free(c->api_id);
    free(c->org_id);
    tp_buf_free(&c->request);
    for (int i = 0; i < c->ncmds; i++)
        free(c->cmds[i].msg);
    free(c);
}

static int safe_header(const char *s)
{
    return strpbrk(s, "\r\n") == NULL;
}

static check_t *check_parse(const cJSON *e, const tp_api_t *api, int i)
{
    const cJSON *url = tp_json_get(e, "url");
    char err[256];
    if (!cJSON_IsString(url) || url->valuestring[0] == '\0') {
        tp_log_warn("API %s (%s): uptime_tests.check_list[%d] skipped: no url", api->api_id,
                    api->file, i);
        return NULL;
    }
    const cJSON *proto = tp_json_get(e, "protocol");
    const char *pr = cJSON_IsString(proto) ? proto->valuestring : "";
    check_t *c = tp_calloc(1, sizeof(*c));
    c->url = tp_strdup(url->valuestring);
    c->api_id = tp_strdup(api->api_id);
    c->org_id = tp_strdup(api->org_id ? api->org_id : "");
    c->tcp = strcasecmp(pr, "tcp") == 0;
    const char *why = NULL;
    if (strcasecmp(pr, "tls") == 0) {
        why = "protocol \"tls\" checks always fail in Tyk (it dials the unknown network \"tls\")";
    } else if (c->tcp) {
        /* "host:port" or tcp://host:port */
        char tmp[600];
        snprintf(tmp, sizeof(tmp), "http://%s",
                 strncmp(c->url, "tcp://", 6) == 0 ? c->url + 6 : c->url);
        if (tp_url_parse(tmp, &c->u, err, sizeof(err)) < 0)
            why = err;
    } else if (tp_url_parse(c->url, &c->u, err, sizeof(err)) < 0) {
        why = err;
    } else if (c->u.tls) {
        why = "https:// check URLs are not supported by this Turnpike version";
    }
    const cJSON *to = tp_json_get(e, "timeout");
    c->timeout_ms = cJSON_IsNumber(to) && to->valuedouble >= 1e6 ? (uint64_t)(to->valuedouble / 1e6)
                                                                 : DEFAULT_TIMEOUT_MS;
    if (why == NULL && c->tcp) {
        const cJSON *cmd;
        cJSON_ArrayForEach(cmd, tp_json_get(e, "commands"))
        {
            const cJSON *name = tp_json_get(cmd, "name"), *msg = tp_json_get(cmd, "message");
            if (!cJSON_IsString(name) || !cJSON_IsString(msg) ||
                (strcmp(name->valuestring, "send") != 0 &&
                 strcmp(name->valuestring, "expect") != 0)) {
                why = "commands must be {\"name\": \"send\"|\"expect\", \"message\": string}";
                break;
            }
            if (c->ncmds == MAX_CMDS) {
                why = "more than 16 commands";
                break;
            }
            cmd_t *k = &c->cmds[c->ncmds++];
            k->expect = name->valuestring[0] == 'e';
            k->msg = tp_strdup(msg->valuestring);
            k->len = strlen(k->msg);
        }
    } else if (why == NULL) {
        const cJSON *m = tp_json_get(e, "method"), *body = tp_json_get(e, "body");
        const char *method = cJSON_IsString(m) && m->valuestring[0] ? m->valuestring : "GET";
        unsigned char *raw = NULL;
        size_t rawlen = 0;
        if (cJSON_IsString(body) && body->valuestring[0] != '\0') {
            size_t bl = strlen(body->valuestring);
            raw = tp_malloc(bl);
            if (mbedtls_base64_decode(raw, bl, &rawlen, (const unsigned char *)body->valuestring,
                                      bl) != 0)
                why = "body is not valid base64";
        }
        if (why == NULL && (!safe_header(method) || strchr(method, ' ') != NULL))
            why = "method is not a token";
        tp_buf_t *b = &c->request;
        tp_buf_printf(b, "%s %s%s%s%s HTTP/1.1\r\nHost: %s\r\n", method, c->u.path[0] ? "" : "/",
                      c->u.path, c->u.query ? "?" : "", c->u.query ? c->u.query : "",
                      c->u.authority);
        const cJSON *h;
        cJSON_ArrayForEach(h, tp_json_get(e, "headers"))
        {
            if (!cJSON_IsString(h) || !safe_header(h->string) || !safe_header(h->valuestring) ||
                strcasecmp(h->string, "host") == 0 || strcasecmp(h->string, "connection") == 0)
                continue;
            tp_http_put_canonical(b, h->string, strlen(h->string));
            tp_buf_printf(b, ": %s\r\n", h->valuestring);
        }
        if (rawlen > 0 || strcasecmp(method, "POST") == 0 || strcasecmp(method, "PUT") == 0)
            tp_buf_printf(b, "Content-Length: %zu\r\n", rawlen);
        tp_buf_puts(b, "Connection: close\r\n\r\n");
        if (rawlen > 0)
            tp_buf_append(b, raw, rawlen);
        free(raw);
    }
    if (why != NULL) {
        tp_log_warn("API %s (%s): uptime_tests.check_list[%d] (%s) skipped: %s", api->api_id,
                    api->file, i, c->url, why);
        check_free(c);
        return NULL;
    }
    return c;
}

static check_t *find_check(tp_hostcheck_t *hc, const char *url)
{
    for (size_t i = 0; i < hc->n; i++)
        if (strcmp(hc->v[i]->url, url) == 0)
            return hc->v[i];
    return NULL;
}

/* ---- results ------------------------------------------------------------------ */

static const char *host_of(const check_t *c)
{
    return c->u.authority;
}

static void on_redis(void *arg, const redisReply *rep, const char *err)
{
    (void)rep;
    if (err != NULL)
        tp_log_debug("host checker: %s: %s", (const char *)arg, err);
}

static void record(tp_hostcheck_t *hc, const check_t *c, int code, int tcp_error, int64_t ms)
{
    int64_t now = tp_time_wall_us();
    time_t secs = (time_t)(now / 1000000);
    struct tm lt;
    localtime_r(&secs, &lt);
    tp_buf_t *b = &hc->rec;
    b->len = 0;
    tp_mp_map(b, 14);
    tp_mp_cstr(b, "URL");
    tp_mp_cstr(b, c->url);
    tp_mp_cstr(b, "RequestTime");
    tp_mp_int(b, ms);
    tp_mp_cstr(b, "ResponseCode");
    tp_mp_int(b, tcp_error ? 521 : code);
    tp_mp_cstr(b, "TCPError");
    tp_mp_bool(b, tcp_error);
    tp_mp_cstr(b, "ServerError");
    tp_mp_bool(b, !tcp_error && code > 200);
    static const char *const parts[] = {"Day", "Month", "Year", "Hour", "Minute"};
    int vals[] = {lt.tm_mday, lt.tm_mon + 1, lt.tm_year + 1900, lt.tm_hour, lt.tm_min};
    for (int i = 0; i < 5; i++) {
        tp_mp_cstr(b, parts[i]);
        tp_mp_int(b, vals[i]);
    }
    tp_mp_cstr(b, "TimeStamp");
    tp_mp_time(b, now / 1000000, (now % 1000000) * 1000);
    int64_t expire = c->expire_after > 0 ? c->expire_after : 36500LL * 86400;
    tp_mp_cstr(b, "ExpireAt");
    tp_mp_time(b, now / 1000000 + expire, (now % 1000000) * 1000);
    tp_mp_cstr(b, "APIID");
    tp_mp_cstr(b, c->api_id);
    tp_mp_cstr(b, "OrgID");
    tp_mp_cstr(b, c->org_id);
    tp_redis_cmd(hc->redis, on_redis, "uptime analytics", "RPUSH %s %b",
                 "host-checker:tyk-uptime-analytics", b->data, b->len);
}

/* Tyk's HostReporter: failures count up; down at the sample size (the
 * key is set again on every failed check while down); once down, each
 * success counts down and at 0 the host is up. */
static void result(tp_hostcheck_t *hc, check_t *c, int code, int tcp_error, const char *why)
{
    int64_t ms = (int64_t)(tp_time_mono_ms() - c->probe->t0);
    int ok = !tcp_error && code == 200;
    c->checks++;
    c->last_code = tcp_error ? 521 : code;
    c->last_ms = ms;
    c->last_us = tp_time_wall_us();
    snprintf(c->last_err, sizeof(c->last_err), "%s", ok ? "" : why);
    const char *host = host_of(c);
    char key[400];
    snprintf(key, sizeof(key), "host-checker:PollerCheckerInstance:%s", host);
    if (!ok) {
        c->failures++;
        c->count++;
        if (c->count >= hc->sample) {
            tp_redis_cmd(hc->redis, on_redis, "down key", "SET %s 1 EX %lld", key,
                         (long long)(hc->time_wait * hc->sample));
            if (!c->down) {
                c->down = 1;
                tp_hosts_set(hc->m->shm->hosts, host, strlen(host), 1);
                tp_log_warn("HostDown: uptime test failed: %s (API %s, host %s): %s", c->url,
                            c->api_id, host, why);
            }
        }
    } else if (c->count >= hc->sample || c->down) {
        if (--c->count <= 0) {
            c->count = 0;
            c->down = 0;
            tp_hosts_set(hc->m->shm->hosts, host, strlen(host), 0);
            tp_redis_cmd(hc->redis, on_redis, "down key", "DEL %s", key);
            tp_log_info("HostUp: uptime test succeeded: %s (API %s, host %s)", c->url, c->api_id,
                        host);
        }
    }
    if (hc->analytics)
        record(hc, c, code, tcp_error, ms);
}

/* ---- probes ------------------------------------------------------------------- */

static void start_more(tp_hostcheck_t *hc);

static void on_probe_closed(uv_handle_t *h)
{
    probe_t *p = h->data;
    if (--p->open_handles == 0) {
        tp_buf_free(&p->out);
        free(p);
    }
}

/* The probe ends with <code> (0 with <why> on a transport failure). */
static void finish(probe_t *p, int code, const char *why)
{
    if (p->done)
        return;
    p->done = 1;
    tp_hostcheck_t *hc = p->hc;
    if (p->check != NULL) {
        result(hc, p->check, code, code == 0, why);
        p->check->probe = NULL;
    }
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, on_probe_closed);
    if (p->tcp.data != NULL)
        uv_close((uv_handle_t *)&p->tcp, on_probe_closed);
    else if (p->gai.data != NULL)
        uv_cancel((uv_req_t *)&p->gai); /* its callback frees nothing: p outlives it */
    hc->inflight--;
    if (!hc->stopped)
        start_more(hc);
    maybe_free(hc);
}

static void on_timeout(uv_timer_t *t)
{
    finish(t->data, 0, "timed out");
}

static void next_cmd(probe_t *p);

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    probe_t *p = h->data;
    *buf = uv_buf_init(p->buf + p->got, (unsigned)(sizeof(p->buf) - 1 - p->got));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    probe_t *p = s->data;
    if (p->done)
        return;
    if (n < 0) {
        finish(p, 0, n == UV_EOF ? "connection closed before an answer" : uv_strerror((int)n));
        return;
    }
    p->got += (size_t)n;
    p->buf[p->got] = '\0';
    check_t *c = p->check;
    if (c == NULL) {
        finish(p, 0, "check removed");
        return;
    }
    if (c->tcp) {
        const cmd_t *k = &c->cmds[p->step];
        if (p->got < k->len && p->got < sizeof(p->buf) - 1)
            return;
        uv_read_stop(s);
        if (p->got < k->len || memcmp(p->buf, k->msg, k->len) != 0) {
            finish(p, 0, "unexpected answer to an expect command");
            return;
        }
        p->step++;
        next_cmd(p);
        return;
    }
    char *eol = strstr(p->buf, "\r\n");
    if (eol == NULL) {
        if (p->got >= sizeof(p->buf) - 1)
            finish(p, 0, "status line too long");
        return;
    }
    int code = 0;
    if (strncmp(p->buf, "HTTP/1.", 7) != 0 || sscanf(p->buf + 8, " %3d", &code) != 1 ||
        code < 100) {
        finish(p, 0, "malformed response");
        return;
    }
    char why[64];
    snprintf(why, sizeof(why), "status %d", code);
    finish(p, code, why);
}

static void on_written(uv_write_t *w, int status)
{
    probe_t *p = w->data;
    if (p->done)
        return;
    if (status < 0) {
        finish(p, 0, uv_strerror(status));
        return;
    }
    if (p->check != NULL && p->check->tcp) {
        p->step++;
        next_cmd(p);
    }
}

/* Writes a copy of <n> bytes at <data> (one write at a time per probe). */
static int probe_write(probe_t *p, const char *data, size_t n)
{
    p->out.len = 0;
    tp_buf_append(&p->out, data, n);
    uv_buf_t b = uv_buf_init(p->out.data, (unsigned)p->out.len);
    p->wreq.data = p;
    return uv_write(&p->wreq, (uv_stream_t *)&p->tcp, &b, 1, on_written);
}

/* TCP checks: the commands in order; all done is a success (200). */
static void next_cmd(probe_t *p)
{
    check_t *c = p->check;
    if (c == NULL) {
        finish(p, 0, "check removed");
        return;
    }
    if (p->step >= c->ncmds) {
        finish(p, 200, "");
        return;
    }
    const cmd_t *k = &c->cmds[p->step];
    if (k->expect) {
        p->got = 0;
        uv_read_start((uv_stream_t *)&p->tcp, on_alloc, on_read);
        return;
    }
    int r = probe_write(p, k->msg, k->len);
    if (r < 0)
        finish(p, 0, uv_strerror(r));
}

static void on_connect(uv_connect_t *cr, int status)
{
    probe_t *p = cr->data;
    if (p->done)
        return;
    if (status < 0) {
        finish(p, 0, uv_strerror(status));
        return;
    }
    check_t *c = p->check;
    if (c == NULL) {
        finish(p, 0, "check removed");
        return;
    }
    if (c->tcp) {
        next_cmd(p);
        return;
    }
    int r = probe_write(p, c->request.data, c->request.len);
    if (r == 0)
        r = uv_read_start((uv_stream_t *)&p->tcp, on_alloc, on_read);
    if (r < 0)
        finish(p, 0, uv_strerror(r));
}

static void connect_to(probe_t *p, const struct sockaddr *sa)
{
    uv_loop_t *loop = &p->hc->m->loop;
    uv_tcp_init(loop, &p->tcp);
    p->tcp.data = p;
    p->open_handles++;
    p->conn.data = p;
    int r = uv_tcp_connect(&p->conn, &p->tcp, sa, on_connect);
    if (r < 0)
        finish(p, 0, uv_strerror(r));
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
    probe_t *p = g->data;
    g->data = NULL;
    if (status == 0 && !p->done)
        connect_to(p, res->ai_addr);
    else if (!p->done)
        finish(p, 0, status == UV_ECANCELED ? "cancelled" : uv_strerror(status));
    uv_freeaddrinfo(res);
    if (--p->open_handles == 0) {
        tp_buf_free(&p->out);
        free(p);
    }
}

static void probe_start(tp_hostcheck_t *hc, check_t *c)
{
    probe_t *p = tp_calloc(1, sizeof(*p));
    p->hc = hc;
    p->check = c;
    p->t0 = tp_time_mono_ms();
    c->probe = p;
    hc->inflight++;
    uv_timer_init(&hc->m->loop, &p->timer);
    p->timer.data = p;
    p->open_handles = 1;
    uv_timer_start(&p->timer, on_timeout, c->timeout_ms, 0);
    struct sockaddr_storage ss;
    if (uv_ip4_addr(c->u.host, c->u.port, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(c->u.host, c->u.port, (struct sockaddr_in6 *)&ss) == 0) {
        connect_to(p, (struct sockaddr *)&ss);
        return;
    }
    char port[8];
    snprintf(port, sizeof(port), "%u", c->u.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    p->gai.data = p;
    p->open_handles++;
    int r = uv_getaddrinfo(&hc->m->loop, &p->gai, on_resolved, c->u.host, port, &hints);
    if (r < 0) {
        p->gai.data = NULL;
        p->open_handles--;
        finish(p, 0, uv_strerror(r));
    }
}

/* Starts probes of this round while the pool has room. */
static void start_more(tp_hostcheck_t *hc)
{
    while (hc->next < hc->n && hc->inflight < hc->pool) {
        check_t *c = hc->v[hc->next++];
        if (c->probe == NULL)
            probe_start(hc, c);
    }
}

/* ---- rounds, the election, the followers --------------------------------------- */

typedef struct follow_s {
    tp_hostcheck_t *hc;
    size_t i;        /* hc->v[i] ... */
    uint64_t synced; /* ... of this check list */
} follow_t;

/* A follower reads what the polling node found. */
static void on_follow(void *arg, const redisReply *rep, const char *err)
{
    follow_t *f = arg;
    tp_hostcheck_t *hc = f->hc;
    hc->rpending--;
    if (err == NULL && rep != NULL && !hc->stopped && f->synced == hc->synced) {
        int down = rep->type == REDIS_REPLY_STRING;
        check_t *c = hc->v[f->i];
        const char *host = host_of(c);
        if (c->down != down) {
            c->down = down;
            tp_hosts_set(hc->m->shm->hosts, host, strlen(host), down);
            tp_log_info("%s: host %s is %s (by the polling node)", down ? "HostDown" : "HostUp",
                        host, down ? "down" : "up");
        }
    }
    free(f);
    maybe_free(hc);
}

static void on_tick(uv_timer_t *t)
{
    tp_hostcheck_t *hc = t->data;
    if (hc->leader) {
        hc->next = 0;
        start_more(hc);
        return;
    }
    for (size_t i = 0; i < hc->n; i++) {
        const char *host = host_of(hc->v[i]);
        follow_t *f = tp_calloc(1, sizeof(*f));
        f->hc = hc;
        f->i = i;
        f->synced = hc->synced;
        hc->rpending++;
        tp_redis_cmd(hc->redis, on_follow, f, "GET host-checker:PollerCheckerInstance:%s", host);
    }
}

static void on_elect(void *arg, const redisReply *rep, const char *err)
{
    tp_hostcheck_t *hc = arg;
    hc->rpending--;
    if (hc->stopped) {
        maybe_free(hc);
        return;
    }
    const char *me = tp_limits_node_id(hc->m->shm->limits);
    int was = hc->leader;
    if (err != NULL || rep->type == REDIS_REPLY_ERROR)
        hc->leader = 1; /* no Redis: this node checks for itself */
    else if (rep->type == REDIS_REPLY_STATUS)
        hc->leader = 1; /* SET NX took it */
    else if (rep->type == REDIS_REPLY_STRING)
        hc->leader = strcmp(rep->str, me) == 0;
    if (hc->leader)
        tp_redis_cmd(hc->redis, on_redis, "election", "EXPIRE %s 15", hc->elect_key);
    if (was != hc->leader)
        tp_log_info("host checker: this node %s",
                    hc->leader ? "polls the uptime tests" : "follows the polling node's results");
}

static void on_elect_nx(void *arg, const redisReply *rep, const char *err)
{
    tp_hostcheck_t *hc = arg;
    if (err == NULL && rep->type == REDIS_REPLY_NIL && !hc->stopped) {
        /* held: by this node? (the pending count carries over) */
        tp_redis_cmd(hc->redis, on_elect, hc, "GET %s", hc->elect_key);
        return;
    }
    on_elect(arg, rep, err);
}

static void on_elect_timer(uv_timer_t *t)
{
    tp_hostcheck_t *hc = t->data;
    hc->rpending++;
    tp_redis_cmd(hc->redis, on_elect_nx, hc, "SET %s %s NX EX 15", hc->elect_key,
                 tp_limits_node_id(hc->m->shm->limits));
}

/* ---- life ------------------------------------------------------------------------ */

static tp_hostcheck_t *hc_new(tp_master_t *m)
{
    char err[512];
    tp_hostcheck_t *hc = tp_calloc(1, sizeof(*hc));
    hc->m = m;
    hc->redis = tp_redis_new(&m->loop, &m->gen->conf.storage, "host checker", err, sizeof(err));
    if (hc->redis == NULL) {
        tp_log_error("host checker: %s", err);
        free(hc);
        return NULL;
    }
    hc->leader = 1; /* until the election says otherwise */
    uv_timer_init(&m->loop, &hc->tick);
    uv_timer_init(&m->loop, &hc->elect);
    hc->tick.data = hc;
    hc->elect.data = hc;
    return hc;
}

static void hc_on_timer_closed(uv_handle_t *h)
{
    tp_hostcheck_t *hc = h->data;
    hc->handles--;
    maybe_free(hc);
}

static void detach_all(tp_hostcheck_t *hc)
{
    for (size_t i = 0; i < hc->n; i++) {
        check_t *c = hc->v[i];
        if (c->probe != NULL)
            c->probe->check = NULL;
        if (c->down)
            tp_hosts_set(hc->m->shm->hosts, host_of(c), strlen(host_of(c)), 0);
        check_free(c);
    }
    free(hc->v);
    hc->v = NULL;
    hc->n = 0;
}

void tp_hostcheck_stop(tp_master_t *m)
{
    tp_hostcheck_t *hc = m->hostcheck;
    if (hc == NULL)
        return;
    m->hostcheck = NULL;
    hc->stopped = 1;
    detach_all(hc);
    tp_buf_free(&hc->rec);
    hc->handles = 2;
    uv_close((uv_handle_t *)&hc->tick, hc_on_timer_closed);
    uv_close((uv_handle_t *)&hc->elect, hc_on_timer_closed);
    tp_redis_free(hc->redis); /* pending callbacks run with an error */
    hc->redis = NULL;
}

void tp_hostcheck_sync(tp_master_t *m)
{
    const tp_conf_t *conf = &m->gen->conf;
    size_t total = 0;
    check_t **v = NULL;
    tp_hostcheck_t *hc = m->hostcheck;
    if (!conf->uptime_tests.disable) {
        for (size_t a = 0; a < m->gen->apis.n; a++) {
            const tp_api_t *api = m->gen->apis.v[a];
            char err[256];
            cJSON *def = tp_json_parse(api->def_json, strlen(api->def_json), err, sizeof(err));
            const cJSON *ut = tp_json_get(def, "uptime_tests");
            if (ut == NULL || cJSON_IsTrue(tp_json_get(ut, "disabled"))) {
                cJSON_Delete(def);
                continue;
            }
            const cJSON *cfg = tp_json_get(ut, "config");
            const cJSON *sd =
                tp_json_get(tp_json_get(cfg, "service_discovery"), "use_discovery_service");
            if (cJSON_IsTrue(sd)) {
                tp_log_warn("API %s (%s): uptime_tests with service_discovery are not checked "
                            "(Tyk never adds the discovered hosts either)",
                            api->api_id, api->file);
                cJSON_Delete(def);
                continue;
            }
            const cJSON *exp = tp_json_get(cfg, "expire_utime_after");
            const cJSON *e;
            int i = 0;
            cJSON_ArrayForEach(e, tp_json_get(ut, "check_list"))
            {
                check_t *c = check_parse(e, api, i++);
                if (c == NULL)
                    continue;
                c->expire_after = cJSON_IsNumber(exp) ? (int64_t)exp->valuedouble : 0;
                /* keyed by URL: the last API with it wins, as in Tyk */
                size_t k;
                for (k = 0; k < total && strcmp(v[k]->url, c->url) != 0; k++)
                    ;
                if (k < total) {
                    check_free(v[k]);
                    v[k] = c;
                    continue;
                }
                v = tp_realloc(v, (total + 1) * sizeof(*v));
                v[total++] = c;
            }
            cJSON_Delete(def);
        }
    }
    if (total == 0) {
        free(v);
        tp_hostcheck_stop(m);
        return;
    }
    if (hc == NULL && (hc = m->hostcheck = hc_new(m)) == NULL) {
        for (size_t i = 0; i < total; i++)
            check_free(v[i]);
        free(v);
        return;
    }
    /* keep the state of checks that stay */
    for (size_t i = 0; i < total; i++) {
        check_t *old = find_check(hc, v[i]->url);
        if (old == NULL)
            continue;
        v[i]->count = old->count;
        v[i]->down = old->down;
        v[i]->last_code = old->last_code;
        v[i]->last_ms = old->last_ms;
        v[i]->last_us = old->last_us;
        v[i]->checks = old->checks;
        v[i]->failures = old->failures;
        memcpy(v[i]->last_err, old->last_err, sizeof(old->last_err));
        v[i]->probe = old->probe;
        if (old->probe != NULL)
            old->probe->check = v[i];
        old->probe = NULL;
        old->down = 0; /* carried over: detach_all must not mark it up */
    }
    detach_all(hc); /* marks the hosts of dropped checks up ... */
    hc->v = v;
    hc->n = total;
    hc->synced++;
    for (size_t i = 0; i < total; i++) /* ... then those still down, down */
        if (v[i]->down)
            tp_hosts_set(m->shm->hosts, host_of(v[i]), strlen(host_of(v[i])), 1);
    hc->next = total; /* the round under way ends; the next starts afresh */
    hc->sample = conf->uptime_tests.failure_trigger_sample_size;
    hc->time_wait = conf->uptime_tests.time_wait;
    hc->analytics = conf->uptime_tests.enable_uptime_analytics;
    hc->pool = (int)conf->uptime_tests.checker_pool_size;
    const char *group = conf->uptime_tests.poller_group;
    snprintf(hc->elect_key, sizeof(hc->elect_key), "host-checker:PollerActiveInstanceID%s%s",
             group[0] ? "." : "", group);
    /* Tyk's interval: time_wait, or a random whole second in [tw-3, tw+3) above 5 */
    int64_t tw = hc->time_wait;
    if (tw > 5)
        tw = tw - 3 + (int64_t)((unsigned)tp_time_mono_ns() % 6);
    uint64_t ms = (uint64_t)tw * 1000;
    if (!uv_is_active((uv_handle_t *)&hc->tick)) {
        on_elect_timer(&hc->elect);
        uv_timer_start(&hc->elect, on_elect_timer, 10000, 10000);
        uv_timer_start(&hc->tick, on_tick, 100, ms);
        tp_log_info("host checker: %zu checks every %llds (sample size %lld)", total, (long long)tw,
                    (long long)hc->sample);
    } else {
        uv_timer_set_repeat(&hc->tick, ms);
    }
}

/* ---- operators ------------------------------------------------------------------ */

void tp_hostcheck_show(const tp_master_t *m, tp_buf_t *out)
{
    const tp_hostcheck_t *hc = m->hostcheck;
    if (hc == NULL) {
        tp_buf_puts(out, m->gen->conf.uptime_tests.disable
                             ? "# host checker disabled (uptime_tests.disable)\n"
                             : "# no uptime tests\n");
        return;
    }
    tp_buf_printf(out, "# %zu checks every %llds, sample size %lld; this node %s; %u hosts down\n",
                  hc->n, (long long)hc->time_wait, (long long)hc->sample,
                  hc->leader ? "polls" : "follows the polling node", tp_hosts_ndown(m->shm->hosts));
    tp_buf_puts(out, "# host state url api failures(count) last_code last_ms checks failed\n");
    for (size_t i = 0; i < hc->n; i++) {
        const check_t *c = hc->v[i];
        tp_buf_printf(out, "%s %s %s %s %lld %d %lld %llu %llu%s%s\n", host_of(c),
                      c->down ? "down" : "up", c->url, c->api_id, (long long)c->count, c->last_code,
                      (long long)c->last_ms, (unsigned long long)c->checks,
                      (unsigned long long)c->failures, c->last_err[0] ? " " : "", c->last_err);
    }
}

/* A Prometheus label value: \\, \" and \\n escaped. */
static void put_label(tp_buf_t *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            tp_buf_append(b, "\\", 1);
        if (*s == '\n')
            tp_buf_puts(b, "\\n");
        else
            tp_buf_append(b, s, 1);
    }
}

static void put_series(tp_buf_t *b, const char *name, const check_t *c, const char *result)
{
    tp_buf_printf(b, "%s{host=\"", name);
    put_label(b, host_of(c));
    tp_buf_puts(b, "\",url=\"");
    put_label(b, c->url);
    tp_buf_puts(b, "\",api_id=\"");
    put_label(b, c->api_id);
    if (result != NULL)
        tp_buf_printf(b, "\",result=\"%s", result);
    tp_buf_puts(b, "\"} ");
}

void tp_hostcheck_metrics(const tp_master_t *m, tp_buf_t *out)
{
    const tp_hostcheck_t *hc = m->hostcheck;
    if (hc == NULL || hc->n == 0)
        return;
    tp_buf_puts(out, "# HELP turnpike_host_up Uptime tests: 1 while the check's host is up.\n"
                     "# TYPE turnpike_host_up gauge\n");
    for (size_t i = 0; i < hc->n; i++) {
        put_series(out, "turnpike_host_up", hc->v[i], NULL);
        tp_buf_printf(out, "%d\n", !hc->v[i]->down);
    }
    tp_buf_puts(out, "# HELP turnpike_host_checks_total Uptime test probes, by result.\n"
                     "# TYPE turnpike_host_checks_total counter\n");
    for (size_t i = 0; i < hc->n; i++) {
        const check_t *c = hc->v[i];
        put_series(out, "turnpike_host_checks_total", c, "ok");
        tp_buf_printf(out, "%llu\n", (unsigned long long)(c->checks - c->failures));
        put_series(out, "turnpike_host_checks_total", c, "failed");
        tp_buf_printf(out, "%llu\n", (unsigned long long)c->failures);
    }
}
