/*
 * master/tp_metrics.c: the Prometheus endpoint, GET /metrics on
 * turnpike.metrics_port (listen_address), never on the gateway's port.
 *
 * The master answers from shared memory: the workers' rows of the metrics
 * counters (shm/tp_shm_metrics.c), their status rows and per-API counters
 * (shm/tp_shm.h), summed over every row a worker ever used, so counters
 * only grow across worker restarts and reloads. A scrape reads a fixed
 * amount of memory (rows x APIs, plus the capped series directory),
 * whatever the request rate; workers are not asked anything.
 *
 * The tyk_* families carry the names, labels and buckets of Tyk Pump's
 * prometheus pump (TYK-COMPAT 16.4), so its dashboards work unchanged;
 * turnpike_* are ours. One connection, one answer, then close.
 */
#include <string.h>

#include "tp_err.h"
#include "tp_log.h"
#include "tp_hostcheck.h"
#include "tp_master.h"
#include "tp_shm_hosts.h"
#include "tp_shm.h"
#include "tp_shm_metrics.h"
#include "tp_time.h"

#define HEAD_MAX 8192
#define CLIENT_TIMEOUT_MS 10000

typedef struct mclient_s {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wr;
    tp_master_t *m;
    char head[HEAD_MAX];
    size_t len;
    tp_buf_t hdr;  /* the response head */
    tp_buf_t body; /* a scrape's text (the master's cached buffer when it was free) */
    int closing;
    int handles; /* open handles left to close */
} mclient_t;

/* ---- the exposition ------------------------------------------------------------ */

/* name="value", escaped as the exposition format wants. */
static void label(tp_buf_t *o, const char *name, const char *v)
{
    tp_buf_puts(o, name);
    tp_buf_append(o, "=\"", 2);
    for (;;) {
        size_t run = strcspn(v, "\\\"\n");
        tp_buf_append(o, v, run);
        v += run;
        if (*v == '\0')
            break;
        tp_buf_append(o, *v == '\n' ? "\\n" : *v == '"' ? "\\\"" : "\\\\", 2);
        v++;
    }
    tp_buf_putc(o, '"');
}

/* " <v>\n", without printf: a scrape writes tens of thousands. */
static void value_nl(tp_buf_t *o, uint64_t v)
{
    char d[24];
    int i = sizeof(d);
    d[--i] = '\n';
    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    d[--i] = ' ';
    tp_buf_append(o, d + i, sizeof(d) - (size_t)i);
}

static void family(tp_buf_t *o, const char *name, const char *type, const char *help)
{
    tp_buf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A counter family with one series per API: the uint64_t field at <off>
 * of each API's summed counters <st>. */
static void per_api(tp_buf_t *o, const tp_snapshot_t *snap, const tp_shm_stat_t *st, size_t off,
                    const char *name, const char *help)
{
    family(o, name, "counter", help);
    for (size_t i = 0; i < snap->napis; i++) {
        uint64_t v;
        memcpy(&v, (const char *)&st[i] + off, sizeof(v));
        tp_buf_printf(o, "%s{", name);
        label(o, "api", snap->apis[i]->api_id);
        tp_buf_putc(o, '}');
        value_nl(o, v);
    }
}

static void scalar(tp_buf_t *o, const char *name, const char *type, const char *help, uint64_t v)
{
    family(o, name, type, help);
    tp_buf_printf(o, "%s %llu\n", name, (unsigned long long)v);
}

/* Rows a worker ever used: their counters still count. */
static void used_rows(tp_master_t *m, uint64_t rows[TP_SHM_MAX_WORKERS / 64])
{
    memset(rows, 0, TP_SHM_MAX_WORKERS / 8);
    for (int k = 0; k < TP_SHM_MAX_WORKERS; k++)
        if (tp_shm_row_used(m->shm, k))
            rows[k / 64] |= 1ULL << (k % 64);
}

static const char *const lat_type[TP_MET_LAT_TYPES] = {"total", "upstream", "gateway"};

static void render_apis(tp_master_t *m, const tp_snapshot_t *snap, const uint64_t *rows,
                        tp_buf_t *o)
{
    tp_metrics_t *mt = m->shm->metrics;
    tp_met_sum_t *sums = tp_calloc(snap->napis + 1, sizeof(*sums));
    for (size_t i = 0; i < snap->napis; i++)
        if (snap->apis[i]->stat_idx != UINT32_MAX)
            tp_metrics_api_sum(mt, rows, snap->apis[i]->stat_idx, &sums[i]);

    family(o, "tyk_http_status", "counter", "HTTP status codes per API");
    for (size_t i = 0; i < snap->napis; i++) {
        const tp_met_sum_t *s = &sums[i];
        for (uint32_t c = 0; c < s->ncodes; c++) {
            char code[16];
            snprintf(code, sizeof(code), "%u", s->code[c]);
            tp_buf_puts(o, "tyk_http_status{");
            label(o, "code", code);
            tp_buf_putc(o, ',');
            label(o, "api", snap->apis[i]->api_id);
            tp_buf_printf(o, "} %llu\n", (unsigned long long)s->count[c]);
        }
        if (s->other > 0) {
            tp_buf_puts(o, "tyk_http_status{code=\"other\",");
            label(o, "api", snap->apis[i]->api_id);
            tp_buf_printf(o, "} %llu\n", (unsigned long long)s->other);
        }
    }

    family(o, "tyk_latency", "histogram", "Latency of API requests in milliseconds");
    /* the fixed parts of every line, once */
    char le[TP_MET_BUCKETS + 1][24];
    for (int b = 0; b < TP_MET_BUCKETS; b++)
        snprintf(le[b], sizeof(le[b]), ",le=\"%u\"}", tp_met_buckets[b]);
    snprintf(le[TP_MET_BUCKETS], sizeof(le[0]), ",le=\"+Inf\"}");
    tp_buf_t api = {0};
    for (size_t i = 0; i < snap->napis; i++) {
        const tp_met_sum_t *s = &sums[i];
        api.len = 0;
        label(&api, "api", snap->apis[i]->api_id);
        for (int t = 0; t < TP_MET_LAT_TYPES; t++) {
            uint64_t n = 0;
            for (int b = 0; b <= TP_MET_BUCKETS; b++)
                n += s->lat[t][b];
            if (n == 0)
                continue;
            char pre[64];
            int plen = snprintf(pre, sizeof(pre), "{type=\"%s\",", lat_type[t]);
            uint64_t cum = 0;
            for (int b = 0; b <= TP_MET_BUCKETS; b++) {
                cum += s->lat[t][b];
                tp_buf_append(o, "tyk_latency_bucket", 18);
                tp_buf_append(o, pre, (size_t)plen);
                tp_buf_append(o, api.data, api.len);
                tp_buf_puts(o, le[b]);
                value_nl(o, cum);
            }
            tp_buf_append(o, "tyk_latency_sum", 15);
            tp_buf_append(o, pre, (size_t)plen);
            tp_buf_append(o, api.data, api.len);
            tp_buf_putc(o, '}');
            value_nl(o, s->lat_sum[t]);
            tp_buf_append(o, "tyk_latency_count", 17);
            tp_buf_append(o, pre, (size_t)plen);
            tp_buf_append(o, api.data, api.len);
            tp_buf_putc(o, '}');
            value_nl(o, n);
        }
    }
    tp_buf_free(&api);
    free(sums);
}

typedef struct series_out_s {
    tp_buf_t *o;
    int fam;
} series_out_t;

static void one_series(void *arg, int fam, int code, const char *const *v, int n, uint64_t count)
{
    series_out_t *so = arg;
    if (fam != so->fam)
        return;
    char c[16];
    snprintf(c, sizeof(c), "%d", code);
    tp_buf_t *o = so->o;
    if (fam == TP_MET_PATH && n == 3) {
        tp_buf_puts(o, "tyk_http_status_per_path{");
        label(o, "code", c);
        tp_buf_putc(o, ',');
        label(o, "api", v[0]);
        tp_buf_putc(o, ',');
        label(o, "path", v[1]);
        tp_buf_putc(o, ',');
        label(o, "method", v[2]);
    } else if (fam == TP_MET_KEY && n == 1) {
        tp_buf_puts(o, "tyk_http_status_per_key{");
        label(o, "code", c);
        tp_buf_putc(o, ',');
        label(o, "key", v[0]);
    } else {
        return;
    }
    tp_buf_printf(o, "} %llu\n", (unsigned long long)count);
}

static void render_turnpike(tp_master_t *m, const tp_snapshot_t *snap, tp_buf_t *o)
{
    tp_shm_totals_t t;
    tp_shm_totals(m->shm, &t);
    scalar(o, "turnpike_workers", "gauge", "Worker processes running", t.live);
    scalar(o, "turnpike_connections", "gauge", "Open client connections", t.conns);
    scalar(o, "turnpike_websockets_open", "gauge", "Upgraded (websocket) sessions being relayed",
           t.ws_open);
    scalar(o, "turnpike_generation", "gauge", "API generation published last", m->generation);
    scalar(o, "turnpike_hosts_down", "gauge", "Hosts the uptime tests find down",
           tp_hosts_ndown(m->shm->hosts));
    tp_hostcheck_metrics(m, o);
    scalar(o, "turnpike_apis", "gauge", "APIs loaded", snap->napis);
    family(o, "turnpike_reloads_total", "counter", "Reloads, by result");
    tp_buf_printf(o, "turnpike_reloads_total{result=\"ok\"} %u\n", m->reloads_ok);
    tp_buf_printf(o, "turnpike_reloads_total{result=\"failed\"} %u\n", m->reloads_failed);
    scalar(o, "turnpike_redis_up", "gauge",
           "1 when every worker's last Redis liveness probe passed",
           t.live > 0 && t.redis_ok == t.live);
    scalar(o, "turnpike_redis_commands_total", "counter", "Redis commands answered or failed",
           t.redis_commands);
    scalar(o, "turnpike_redis_command_errors_total", "counter",
           "Redis commands that failed or got an error reply", t.redis_errors);
    family(o, "turnpike_redis_command_seconds_total", "counter",
           "Redis command round trips, summed (divide by turnpike_redis_commands_total)");
    tp_buf_printf(o, "turnpike_redis_command_seconds_total %.6f\n", (double)t.redis_usec / 1e6);
    scalar(o, "turnpike_session_cache_hits_total", "counter", "Sessions found in the node's cache",
           t.sc_hits);
    scalar(o, "turnpike_session_cache_misses_total", "counter",
           "Sessions not in the node's cache (read from Redis)", t.sc_misses);

    tp_shm_stat_t *st = tp_calloc(snap->napis + 1, sizeof(*st));
    for (size_t i = 0; i < snap->napis; i++)
        tp_shm_stat_sum(m->shm, snap->apis[i]->stat_idx, &st[i]);
    per_api(o, snap, st, offsetof(tp_shm_stat_t, rate_limited), "turnpike_rate_limited_total",
            "Requests refused by a rate limit (429)");
    per_api(o, snap, st, offsetof(tp_shm_stat_t, quota_exceeded), "turnpike_quota_exceeded_total",
            "Requests refused by a quota (403 Quota exceeded)");
    per_api(o, snap, st, offsetof(tp_shm_stat_t, websockets), "turnpike_websockets_total",
            "Upgraded (websocket) sessions started: the upstream answered 101");
    free(st);

    family(o, "turnpike_analytics_records_total", "counter", "Analytics records, by fate");
    tp_buf_printf(o, "turnpike_analytics_records_total{result=\"recorded\"} %llu\n",
                  (unsigned long long)t.an_recorded);
    tp_buf_printf(o, "turnpike_analytics_records_total{result=\"pushed\"} %llu\n",
                  (unsigned long long)t.an_flushed);
    tp_buf_printf(o, "turnpike_analytics_records_total{result=\"dropped\"} %llu\n",
                  (unsigned long long)t.an_dropped);
    scalar(o, "turnpike_analytics_buffered", "gauge",
           "Analytics records waiting in the workers for Redis", t.an_buffered);
    family(o, "turnpike_upstream_errors_total", "counter", "Upstream failures, by kind");
    tp_buf_printf(o, "turnpike_upstream_errors_total{kind=\"connect\"} %llu\n",
                  (unsigned long long)t.up_connect_errors);
    tp_buf_printf(o, "turnpike_upstream_errors_total{kind=\"timeout\"} %llu\n",
                  (unsigned long long)t.up_timeouts);
    tp_buf_printf(o, "turnpike_upstream_errors_total{kind=\"other\"} %llu\n",
                  (unsigned long long)t.up_other_errors);
    family(o, "turnpike_metrics_series", "gauge",
           "Series taken per capped family (turnpike.metrics_max_series)");
    tp_buf_printf(o, "turnpike_metrics_series{family=\"tyk_http_status_per_path\"} %u\n",
                  tp_metrics_series_used(m->shm->metrics, TP_MET_PATH));
    tp_buf_printf(o, "turnpike_metrics_series{family=\"tyk_http_status_per_key\"} %u\n",
                  tp_metrics_series_used(m->shm->metrics, TP_MET_KEY));
    scalar(o, "turnpike_metrics_series_lost_total", "counter",
           "Requests a capped family had no room for, even in its overflow series",
           tp_metrics_series_lost(m->shm->metrics));
}

void tp_metrics_render(tp_master_t *m, tp_buf_t *o)
{
    const tp_snapshot_t *snap = tp_shm_current(m->shm);
    uint64_t rows[TP_SHM_MAX_WORKERS / 64];
    used_rows(m, rows);
    render_apis(m, snap, rows, o);
    series_out_t so = {o, TP_MET_PATH};
    family(o, "tyk_http_status_per_path", "counter", "HTTP status codes per API path and method");
    tp_metrics_each_series(m->shm->metrics, rows, one_series, &so);
    so.fam = TP_MET_KEY;
    family(o, "tyk_http_status_per_key", "counter", "HTTP status codes per API key");
    tp_metrics_each_series(m->shm->metrics, rows, one_series, &so);
    render_turnpike(m, snap, o);
}

/* ---- the connections ------------------------------------------------------------- */

static void on_closed(uv_handle_t *h)
{
    mclient_t *c = h->data;
    if (--c->handles == 0) {
        tp_buf_free(&c->hdr);
        /* the next scrape reuses the pages: no fresh 5 MB to fault in */
        if (c->m->metrics_cache.data == NULL && c->body.cap <= (64u << 20)) {
            c->m->metrics_cache = c->body;
        } else {
            tp_buf_free(&c->body);
        }
        free(c);
    }
}

static void client_close(mclient_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->timer, on_closed);
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void on_written(uv_write_t *wr, int status)
{
    (void)status;
    client_close(wr->data);
}

static void reply(mclient_t *c, int code, const char *reason, const char *type, const char *body,
                  size_t blen)
{
    tp_buf_t *o = &c->hdr;
    o->len = 0;
    tp_buf_printf(o,
                  "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                  "Connection: close\r\n\r\n",
                  code, reason, type, blen);
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_buf_t b[2] = {uv_buf_init(o->data, (unsigned)o->len),
                     uv_buf_init((char *)body, (unsigned)blen)};
    c->wr.data = c;
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, b, blen > 0 ? 2 : 1, on_written) < 0)
        client_close(c);
}

static void answer(mclient_t *c)
{
    const char *sp = memchr(c->head, ' ', c->len);
    const char *sp2 = sp != NULL ? memchr(sp + 1, ' ', c->len - (size_t)(sp + 1 - c->head)) : NULL;
    if (sp == NULL || sp2 == NULL) {
        static const char bad[] = "bad request\n";
        reply(c, 400, "Bad Request", "text/plain", bad, sizeof(bad) - 1);
        return;
    }
    size_t mlen = (size_t)(sp - c->head), plen = (size_t)(sp2 - sp - 1);
    const char *path = sp + 1;
    const char *q = memchr(path, '?', plen);
    if (q != NULL)
        plen = (size_t)(q - path);
    if (!(plen == 8 && memcmp(path, "/metrics", 8) == 0)) {
        static const char nf[] = "404 page not found\n";
        reply(c, 404, "Not Found", "text/plain; charset=utf-8", nf, sizeof(nf) - 1);
        return;
    }
    if (!((mlen == 3 && memcmp(c->head, "GET", 3) == 0) ||
          (mlen == 4 && memcmp(c->head, "HEAD", 4) == 0))) {
        static const char na[] = "method not allowed\n";
        reply(c, 405, "Method Not Allowed", "text/plain", na, sizeof(na) - 1);
        return;
    }
    c->body = c->m->metrics_cache;
    c->m->metrics_cache = (tp_buf_t){0};
    c->body.len = 0;
    tp_metrics_render(c->m, &c->body);
    int head = mlen == 4;
    reply(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", head ? "" : c->body.data,
          head ? 0 : c->body.len);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    mclient_t *c = h->data;
    (void)hint;
    *buf = uv_buf_init(c->head + c->len, (unsigned)(HEAD_MAX - c->len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    mclient_t *c = s->data;
    (void)buf;
    if (n < 0) {
        client_close(c);
        return;
    }
    size_t before = c->len;
    c->len += (size_t)n;
    size_t from = before > 3 ? before - 3 : 0;
    for (size_t i = from; i + 4 <= c->len; i++)
        if (memcmp(c->head + i, "\r\n\r\n", 4) == 0) {
            answer(c);
            return;
        }
    if (c->len == HEAD_MAX) {
        static const char big[] = "request header too large\n";
        reply(c, 431, "Request Header Fields Too Large", "text/plain", big, sizeof(big) - 1);
    }
}

static void on_timeout(uv_timer_t *t)
{
    client_close(t->data);
}

static void on_connection(uv_stream_t *server, int status)
{
    tp_master_t *m = server->data;
    if (status < 0)
        return;
    mclient_t *c = tp_calloc(1, sizeof(*c));
    c->m = m;
    uv_tcp_init(&m->loop, &c->tcp);
    uv_timer_init(&m->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        client_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_timeout, CLIENT_TIMEOUT_MS, 0);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int tp_metrics_start(tp_master_t *m, char *err, size_t errlen)
{
    const tp_conf_t *conf = &m->gen->conf;
    if (conf->tp.metrics_port == 0 || m->shm->metrics == NULL)
        return 0;
    if (tp_listen_probe(conf->listen_address, (int)conf->tp.metrics_port, err, errlen) < 0)
        return -1;
    int fd = tp_listen_open(conf->listen_address, (int)conf->tp.metrics_port, err, errlen);
    if (fd < 0)
        return -1;
    uv_tcp_init(&m->loop, &m->metrics);
    m->metrics.data = m;
    int rc = uv_tcp_open(&m->metrics, fd);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&m->metrics, 128, on_connection);
    if (rc < 0) {
        snprintf(err, errlen, "turnpike.metrics_port %lld: %s", (long long)conf->tp.metrics_port,
                 uv_strerror(rc));
        uv_close((uv_handle_t *)&m->metrics, NULL);
        return -1;
    }
    m->metrics_open = 1;
    tp_log_info("Prometheus metrics on %s:%lld/metrics",
                conf->listen_address && conf->listen_address[0] ? conf->listen_address : "*",
                (long long)conf->tp.metrics_port);
    return 0;
}

void tp_metrics_stop(tp_master_t *m)
{
    if (!m->metrics_open)
        return;
    m->metrics_open = 0;
    uv_close((uv_handle_t *)&m->metrics, NULL);
}
