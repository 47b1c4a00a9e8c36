/*
 * worker/tp_analytics.c: Tyk's analytics records (TYK-COMPAT 8, 15), as
 * Tyk Pump reads them from Redis: one msgpack AnalyticsRecord per proxied
 * or refused API request, pushed onto analytics-tyk-system-analytics.
 *
 * Three stages, in the chains of APIs that record (enable_analytics, not
 * do_not_track): "track" first, which copies what the record needs out of
 * the request head before anything can answer (the head may be gone by
 * the time the request is answered), "notrack" after the version check
 * (extended_paths.do_not_track_endpoints of that version), and the log
 * stage "analytics", which encodes the record once the request is answered.
 *
 * Off the request path: records go into this worker's bounded buffer and
 * are pushed in batches, one RPUSH of many values per flush (every 200 ms,
 * or when a batch is full); a request never waits for Redis. While Redis
 * is away the buffer holds records_buffer_size records and drops (and
 * counts) the rest. The list gets storage_expiration_time as its TTL when
 * it has none (Tyk's purger), checked at most once a second.
 */
#include <regex.h>

#include <mbedtls/base64.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "tp_api_mw.h"
#include "tp_counter.h"
#include "tp_endpoints.h"
#include "tp_err.h"
#include "tp_json.h"
#include "tp_log.h"
#include "tp_msgpack.h"
#include "tp_time.h"
#include "tp_worker.h"

#define LIST_KEY "analytics-tyk-system-analytics"
#define BATCH_MAX 1000     /* records per RPUSH */
#define FLUSH_EVERY_MS 200 /* Tyk's idle flush */
#define DRAIN_MAX_MS 2000  /* how long a draining worker waits for its last push */

/* ---- per API, compiled with the generation --------------------------------------- */

static int jbool(const cJSON *o, const char *k)
{
    return cJSON_IsTrue(tp_json_get(o, k));
}

struct tp_analytics_api_s {
    char **tags; /* the API's tags */
    size_t ntags;
    int64_t expire_after; /* expire_analytics_after, s; 0: 100 years */
    int detail;           /* the API's enable_detailed_recording */
    tp_endpoints_t nt;    /* do_not_track_endpoints of every version */
};

void tp_analytics_api_free(tp_analytics_api_t *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->ntags; i++)
        free(a->tags[i]);
    free(a->tags);
    tp_endpoints_free(&a->nt);
    free(a);
}

int tp_analytics_has_notrack(const tp_analytics_api_t *a)
{
    return a != NULL && a->nt.n > 0;
}

tp_analytics_api_t *tp_analytics_compile(const cJSON *def, const tp_api_t *api,
                                         const tp_conf_t *conf)
{
    if ((!conf->enable_analytics && conf->tp.metrics_port == 0) || jbool(def, "do_not_track"))
        return NULL; /* neither records nor metrics for this API */
    tp_analytics_api_t *a = tp_calloc(1, sizeof(*a));
    a->nt.section = "do_not_track_endpoints";
    a->nt.empty_any = 1;
    const cJSON *tags = tp_json_get(def, "tags"), *t;
    if (cJSON_IsArray(tags)) {
        a->tags = tp_calloc((size_t)cJSON_GetArraySize(tags) + 1, sizeof(char *));
        cJSON_ArrayForEach(t, tags) if (cJSON_IsString(t)) a->tags[a->ntags++] =
            tp_strdup(t->valuestring);
    }
    a->detail = jbool(def, "enable_detailed_recording");
    const cJSON *exp = tp_json_get(def, "expire_analytics_after");
    if (cJSON_IsNumber(exp) && exp->valuedouble > 0)
        a->expire_after = (int64_t)exp->valuedouble;
    const cJSON *versions = tp_json_get(tp_json_get(def, "version_data"), "versions"), *v;
    cJSON_ArrayForEach(v, versions)
    {
        const cJSON *e;
        cJSON_ArrayForEach(e,
                           tp_json_get(tp_json_get(v, "extended_paths"), "do_not_track_endpoints"))
            tp_endpoints_add(&a->nt, tp_version_name(v), e, api, conf);
    }
    return a;
}

/* ---- path normalisation ---------------------------------------------------------------- */

struct tp_analytics_s {
    tp_worker_t *w;
    regex_t *custom; /* normalise_urls.custom_patterns, compiled */
    size_t ncustom;
    tp_buf_t buf;  /* the buffered records, back to back ... */
    size_t *lens;  /* ... and their lengths */
    size_t n, cap; /* records buffered, at most */
    int flushing;  /* a push of this many records is out */
    int redis_ok;  /* the last push went through */
    int dropping;  /* records are being dropped (logged once per burst) */
    uint64_t dropped_burst;
    uint64_t expire_ms[11]; /* when each list's TTL was last seen to (10: the one key) */
    int shard;              /* the list the push under way goes to: 0-9, or 10 */
    uv_timer_t timer;
    uv_timer_t drain_timer;
    void (*drained)(tp_worker_t *w);
    tp_buf_t scratch; /* a record's normalised path */
    tp_buf_t tmp;     /* a record's other scratch (kept: no malloc per record) */
    time_t lt_sec;    /* the second <lt> is the local time of */
    struct tm lt;
    char key[64]; /* the list the push under way goes to */
};

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A UUID at <p> ([0-9a-fA-F]{8}(-)?[0-9a-fA-F]{4}(-)? ... {12}): its length, or 0. */
static size_t uuid_at(const char *p, const char *end)
{
    static const int runs[5] = {8, 4, 4, 4, 12};
    const char *s = p;
    for (int r = 0; r < 5; r++) {
        if (r > 0 && s < end && *s == '-')
            s++;
        for (int i = 0; i < runs[r]; i++, s++)
            if (s >= end || !is_hex(*s))
                return 0;
    }
    return (size_t)(s - p);
}

/* Crockford's base32, any case: what a ULID's last 25 characters are. */
static int is_b32(char c)
{
    if (c >= 'a' && c <= 'z')
        c = (char)(c - 'a' + 'A');
    return (c >= '0' && c <= '9') ||
           (c >= 'A' && c <= 'Z' && c != 'I' && c != 'L' && c != 'O' && c != 'U');
}

static size_t ulid_at(const char *p, const char *end)
{
    if (end - p < 26 || p[0] < '0' || p[0] > '7')
        return 0;
    for (int i = 1; i < 26; i++)
        if (!is_b32(p[i]))
            return 0;
    return 26;
}

static size_t number_at(const char *p, const char *end)
{
    if (p[0] != '/' || p + 1 >= end || p[1] < '0' || p[1] > '9')
        return 0;
    const char *s = p + 1;
    while (s < end && *s >= '0' && *s <= '9')
        s++;
    return (size_t)(s - p);
}

/* One pass of <at> over <in>: each match (leftmost first, not overlapping)
 * becomes <with>. */
static void replace_pass(tp_buf_t *out, const char *in, size_t n,
                         size_t (*at)(const char *, const char *), const char *with)
{
    const char *p = in, *end = in + n;
    out->len = 0;
    while (p < end) {
        size_t m = at(p, end);
        if (m > 0) {
            tp_buf_puts(out, with);
            p += m;
        } else {
            tp_buf_putc(out, *p++);
        }
    }
    tp_buf_cstr(out);
}

static void replace_regex(tp_buf_t *out, const char *in, const regex_t *re)
{
    out->len = 0;
    const char *p = in;
    int flags = 0;
    regmatch_t m;
    while (*p != '\0' && regexec(re, p, 1, &m, flags) == 0) {
        tp_buf_append(out, p, (size_t)m.rm_so);
        tp_buf_puts(out, "{var}");
        if (m.rm_eo == m.rm_so) { /* an empty match: step over one byte */
            if (p[m.rm_eo] == '\0')
                break;
            tp_buf_putc(out, p[m.rm_eo]);
            m.rm_eo++;
        }
        p += m.rm_eo;
        flags = REG_NOTBOL;
    }
    tp_buf_puts(out, p);
    tp_buf_cstr(out);
}

void tp_analytics_normalise(const tp_analytics_t *an, const tp_conf_t *conf, const char *path,
                            size_t n, tp_buf_t *out)
{
    int on = conf->analytics_config.normalise_urls.enabled;
    int uuids = conf->analytics_config.normalise_urls.normalise_uuids;
    int ulids = conf->analytics_config.normalise_urls.normalise_ulids;
    int numbers = conf->analytics_config.normalise_urls.normalise_numbers;
    out->len = 0;
    tp_buf_append(out, path, n);
    tp_buf_cstr(out);
    if (!on)
        return;
    tp_buf_t tmp = {0}, swap;
#define STEP(call)                                                                                 \
    do {                                                                                           \
        call;                                                                                      \
        swap = tmp, tmp = *out, *out = swap;                                                       \
    } while (0)
    if (uuids)
        STEP(replace_pass(&tmp, out->data, out->len, uuid_at, "{uuid}"));
    if (ulids)
        STEP(replace_pass(&tmp, out->data, out->len, ulid_at, "{ulid}"));
    if (numbers)
        STEP(replace_pass(&tmp, out->data, out->len, number_at, "/{id}"));
    for (size_t i = 0; an != NULL && i < an->ncustom; i++)
        STEP(replace_regex(&tmp, out->data, &an->custom[i]));
#undef STEP
    tp_buf_free(&tmp);
}

/* ---- the track stage: what the record needs, copied from the head ------------------ */

typedef struct tp_track_s {
    const char *method;
    char *ua;
    char *ip;
    char *path; /* r.URL.Path as Tyk records it: without the listen path if stripped */
    size_t path_len;
    const char *tracked; /* track_endpoints: the entry's path, the record's Path; NULL: none */
    int64_t content_length;
} tp_track_t;

static char *arena_dup(tp_req_t *req, tp_str_t s)
{
    char *p = tp_req_alloc(req, s.n + 1);
    if (s.n > 0) /* an absent header is {NULL, 0} */
        memcpy(p, s.p, s.n);
    p[s.n] = '\0';
    return p;
}

/* Detailed recording (TYK-COMPAT 8.5) may be asked for by the API, the
 * global setting, or the key's session, which is not known yet: keep the
 * wire bytes when any of them can ask, starting with the client's head;
 * the log stage decides. */
static void tap_start(tp_req_t *req)
{
    tp_worker_t *w = req->conn->w;
    const tp_conf_t *conf = w->conf;
    const tp_compiled_t *c = tp_compiled(w, req);
    const tp_api_t *api = req->route->api;
    if (!conf->enable_analytics || c == NULL || c->analytics == NULL ||
        !(conf->analytics_config.enable_detailed_recording || c->analytics->detail ||
          !api->use_keyless))
        return;
    req->tap_max = (uint32_t)conf->tp.analytics_detail_max;
    tp_tap_t *t = &req->tap_in;
    const char *m = llhttp_method_name(req->method);
    tp_req_tap(req, t, m, strlen(m));
    tp_req_tap(req, t, " ", 1);
    tp_str_t url = tp_req_str(req, req->url_off, req->url_len);
    tp_req_tap(req, t, url.p, url.n);
    char v[16];
    int n = snprintf(v, sizeof(v), " HTTP/%u.%u\r\n", req->http_major, req->http_minor);
    tp_req_tap(req, t, v, (size_t)n);
    for (uint32_t i = 0; i < req->nhdrs; i++) {
        const tp_hdr_t *h = &req->hdrs[i];
        tp_req_tap(req, t, req->head_base + h->name_off, h->name_len);
        tp_req_tap(req, t, ": ", 2);
        tp_req_tap(req, t, req->head_base + h->val_off, h->val_len);
        tp_req_tap(req, t, "\r\n", 2);
    }
    tp_req_tap(req, t, "\r\n", 2);
}

static tp_stage_rc_t track_run(tp_req_t *req)
{
    const tp_conf_t *conf = req->conn->w->conf;
    tp_str_t ip = tp_req_real_ip(req);
    const tp_strlist_t *ignored = &conf->analytics_config.ignored_ips;
    for (size_t i = 0; i < ignored->n; i++)
        if (strlen(ignored->v[i]) == ip.n && memcmp(ignored->v[i], ip.p, ip.n) == 0)
            return TP_STAGE_NEXT; /* exact strings, as Tyk */
    tp_track_t *t = tp_req_alloc(req, sizeof(*t));
    t->method = llhttp_method_name(req->method);
    t->tracked = NULL;
    t->ua = arena_dup(req, tp_req_header(req, "User-Agent"));
    t->ip = arena_dup(req, ip);
    tp_str_t path = req->rp->path;
    if (req->route->api->strip_listen_path && req->rp->matched > 0) {
        size_t m = req->rp->matched;
        if (m > path.n)
            m = path.n;
        /* keep the slash the listen path ended with */
        if (m > 0 && path.p[m - 1] == '/')
            m--;
        path.p += m;
        path.n -= m;
    }
    int slash = path.n == 0 || path.p[0] != '/';
    t->path = tp_req_alloc(req, path.n + 2);
    t->path_len = 0;
    if (slash)
        t->path[t->path_len++] = '/';
    memcpy(t->path + t->path_len, path.p, path.n);
    t->path_len += path.n;
    t->path[t->path_len] = '\0';
    t->content_length = req->chunked                               ? -1
                        : req->has_body || req->content_length > 0 ? (int64_t)req->content_length
                                                                   : 0;
    req->track = t;
    tap_start(req);
    return TP_STAGE_NEXT;
}

static int track_wanted(const tp_chain_api_t *a)
{
    return a->analytics;
}

const tp_stage_t tp_stage_track = {.name = "track", .wanted = track_wanted, .run = track_run};

tp_str_t tp_track_path(const tp_req_t *req)
{
    const tp_track_t *t = req->track;
    return t != NULL ? (tp_str_t){t->path, t->path_len} : (tp_str_t){"", 0};
}

/* do_not_track_endpoints of the request's version: no record. */
static tp_stage_rc_t notrack_run(tp_req_t *req)
{
    tp_worker_t *w = req->conn->w;
    const tp_compiled_t *c = tp_compiled(w, req);
    if (req->track == NULL || c == NULL || c->analytics == NULL || req->version == NULL)
        return TP_STAGE_NEXT;
    if (tp_endpoints_match(&c->analytics->nt, req) >= 0) {
        req->track = NULL;
        return TP_STAGE_NEXT;
    }
    /* track_endpoints: Tyk's TrackPath, and the entry's path as Path */
    const tp_api_mw_t *mw = req->version->mw;
    if (mw == NULL || mw->ntrack == 0)
        return TP_STAGE_NEXT;
    const tp_epmatch_t *m = tp_epmatch_first(req, mw->track, mw->ntrack, sizeof(*mw->track));
    if (m != NULL)
        req->track->tracked = mw->track_paths[m - mw->track];
    return TP_STAGE_NEXT;
}

static int notrack_wanted(const tp_chain_api_t *a)
{
    return a->analytics && (a->notrack || a->tracked);
}

const tp_stage_t tp_stage_notrack = {
    .name = "notrack", .wanted = notrack_wanted, .run = notrack_run};

/* ---- the record ------------------------------------------------------------------------- */

static void kv_str(tp_buf_t *b, const char *k, const char *v)
{
    tp_mp_cstr(b, k);
    tp_mp_cstr(b, v);
}

static void kv_int(tp_buf_t *b, const char *k, int64_t v)
{
    tp_mp_cstr(b, k);
    tp_mp_int(b, v);
}

static void kv_bool(tp_buf_t *b, const char *k, int v)
{
    tp_mp_cstr(b, k);
    tp_mp_bool(b, v);
}

/* Tags in Tyk's order (TYK-COMPAT 8.3, 15.3). */
static void put_tags(tp_buf_t *b, const tp_analytics_api_t *a, const tp_sess_rec_t *sess,
                     const char *keyhash, const tp_api_t *api, int cached)
{
    const cJSON *pols = sess->policies;
    const cJSON *stags = sess->tags;
    const char *dev = sess->developer;
    uint32_t n = (uint32_t)a->ntags + (dev != NULL ? 1 : 0) + (keyhash[0] ? 1 : 0) +
                 (api->org_id != NULL && api->org_id[0] ? 1 : 0) + 1 + (cached != 0);
    const cJSON *e;
    cJSON_ArrayForEach(e, pols) n += cJSON_IsString(e);
    cJSON_ArrayForEach(e, stags) n += cJSON_IsString(e);
    tp_mp_cstr(b, "Tags");
    tp_mp_array(b, n);
    cJSON_ArrayForEach(e, pols) if (cJSON_IsString(e))
    {
        tp_mp_str2(b, "pol-", e->valuestring);
    }
    if (dev != NULL) {
        tp_mp_str2(b, "dev-", dev);
    }
    cJSON_ArrayForEach(e, stags) if (cJSON_IsString(e)) tp_mp_cstr(b, e->valuestring);
    for (size_t i = 0; i < a->ntags; i++)
        tp_mp_cstr(b, a->tags[i]);
    if (cached)
        tp_mp_cstr(b, "cached-response");
    if (keyhash[0]) {
        tp_mp_str2(b, "key-", keyhash);
    }
    if (api->org_id != NULL && api->org_id[0]) {
        tp_mp_str2(b, "org-", api->org_id);
    }
    tp_mp_str2(b, "api-", api->api_id);
}

/* A tap's bytes as a base64 string (standard, padded), or "". */
static void put_base64(tp_buf_t *b, const tp_tap_t *t, tp_buf_t *tmp)
{
    size_t n = 0;
    if (t == NULL || t->len == 0) {
        tp_mp_str(b, "", 0);
        return;
    }
    tmp->len = 0;
    char *dst = tp_buf_reserve(tmp, (size_t)t->len / 3 * 4 + 8);
    mbedtls_base64_encode((unsigned char *)dst, (size_t)t->len / 3 * 4 + 8, &n,
                          (const unsigned char *)t->p, t->len);
    tp_mp_str(b, dst, n);
}

static void put_zero_structs(tp_buf_t *b)
{
    tp_mp_cstr(b, "Geo");
    tp_mp_map(b, 3);
    tp_mp_cstr(b, "Country");
    tp_mp_map(b, 1);
    kv_str(b, "ISOCode", "");
    tp_mp_cstr(b, "City");
    tp_mp_map(b, 2);
    tp_mp_cstr(b, "GeoNameID");
    tp_mp_uint(b, 0);
    tp_mp_cstr(b, "Names");
    tp_mp_nil(b);
    tp_mp_cstr(b, "Location");
    tp_mp_map(b, 3);
    tp_mp_cstr(b, "Latitude");
    tp_mp_float(b, 0);
    tp_mp_cstr(b, "Longitude");
    tp_mp_float(b, 0);
    kv_str(b, "TimeZone", "");
    tp_mp_cstr(b, "Network");
    tp_mp_map(b, 4);
    kv_int(b, "OpenConnections", 0);
    kv_int(b, "ClosedConnection", 0);
    kv_int(b, "BytesIn", 0);
    kv_int(b, "BytesOut", 0);
}

/* Appends the record of <req> to <b>: AnalyticsRecord, the master layout
 * of tyk-pump (35 fields in struct order, TYK-COMPAT 15.2). */
static void encode(tp_buf_t *b, tp_req_t *req, const tp_analytics_api_t *a, tp_buf_t *tmp)
{
    tp_worker_t *w = req->conn->w;
    const tp_conf_t *conf = w->conf;
    const tp_track_t *t = req->track;
    const tp_api_t *api = req->route->api;
    static const tp_sess_rec_t no_session;
    const tp_sess_rec_t *sess = req->sess != NULL ? tp_session_rec(req->sess) : &no_session;
    const char *keyhash = req->sess != NULL ? tp_session_key_hash(req->sess) : "";
    int64_t wall_us = tp_time_wall_us();
    time_t sec = (time_t)(wall_us / 1000000);
    tp_analytics_t *an = w->analytics;
    if (sec != an->lt_sec) { /* the local date changes once a second at most */
        localtime_r(&sec, &an->lt);
        an->lt_sec = sec;
    }
    const struct tm lt = an->lt;
    int64_t total, upstream;
    tp_req_latency(req, &total, &upstream);
    if (upstream < 0)
        upstream = 0; /* it never reached an upstream */

    tp_mp_map(b, 35);
    kv_str(b, "Method", t->method);
    const tp_target_t *target = req->target != NULL ? req->target
                                : api->ntargets > 0 ? &api->targets[0]
                                                    : NULL;
    tmp->len = 0;
    if (target != NULL)
        tp_buf_puts(tmp, target->url.authority);
    tp_mp_cstr(b, "Host");
    tp_mp_str(b, tmp->data != NULL ? tmp->data : "", tmp->len);
    if (t->tracked != NULL)
        tp_analytics_normalise(w->analytics, conf, t->tracked, strlen(t->tracked),
                               &w->analytics->scratch);
    else
        tp_analytics_normalise(w->analytics, conf, t->path, t->path_len, &w->analytics->scratch);
    tp_mp_cstr(b, "Path");
    tp_mp_str(b, w->analytics->scratch.data, w->analytics->scratch.len);
    tp_mp_cstr(b, "RawPath");
    tp_mp_str(b, t->path, t->path_len);
    kv_int(b, "ContentLength", t->content_length);
    kv_str(b, "UserAgent", t->ua);
    kv_int(b, "Day", lt.tm_mday);
    kv_int(b, "Month", lt.tm_mon + 1);
    kv_int(b, "Year", lt.tm_year + 1900);
    kv_int(b, "Hour", lt.tm_hour);
    kv_int(b, "ResponseCode", req->status);
    kv_str(b, "APIKey", keyhash);
    tp_mp_cstr(b, "TimeStamp");
    tp_mp_time(b, wall_us / 1000000, (wall_us % 1000000) * 1000);
    const char *vname = req->version != NULL ? req->version->name : NULL;
    kv_str(b, "APIVersion", vname != NULL && vname[0] ? vname : "Non Versioned");
    kv_str(b, "APIName", api->name);
    kv_str(b, "APIID", api->api_id);
    kv_str(b, "OrgID", api->org_id);
    kv_str(b, "OauthID", sess->oauth_client != NULL ? sess->oauth_client : "");
    kv_int(b, "RequestTime", total);
    int detail = a->detail || sess->detailed || conf->analytics_config.enable_detailed_recording;
    tp_mp_cstr(b, "RawRequest");
    put_base64(b, detail ? &req->tap_in : NULL, tmp);
    tp_mp_cstr(b, "RawResponse");
    put_base64(b, detail ? &req->tap_out : NULL, tmp);
    kv_str(b, "IPAddress", t->ip);
    put_zero_structs(b);
    tp_mp_cstr(b, "Latency");
    tp_mp_map(b, 3);
    kv_int(b, "Total", total);
    kv_int(b, "Upstream", upstream);
    kv_int(b, "Gateway", total - upstream);
    put_tags(b, a, sess, keyhash, api, req->cached);
    kv_str(b, "Alias", sess->alias != NULL ? sess->alias : "");
    kv_bool(b, "TrackPath", t->tracked != NULL);
    int64_t expire = a->expire_after > 0 ? a->expire_after : 36500LL * 86400;
    tp_mp_cstr(b, "ExpireAt");
    tp_mp_time(b, wall_us / 1000000 + expire, (wall_us % 1000000) * 1000);
    kv_str(b, "ApiSchema", "");
    kv_str(b, "OriginalPath", "");
    kv_str(b, "ListenPath", api->listen_path);
    tp_mp_cstr(b, "GraphQLStats");
    tp_mp_map(b, 7);
    kv_str(b, "Variables", "");
    tp_mp_cstr(b, "RootFields");
    tp_mp_nil(b);
    tp_mp_cstr(b, "Types");
    tp_mp_nil(b);
    tp_mp_cstr(b, "Errors");
    tp_mp_nil(b);
    kv_int(b, "OperationType", 0);
    kv_bool(b, "HasErrors", 0);
    kv_bool(b, "IsGraphQL", 0);
    tp_mp_cstr(b, "MCPStats");
    tp_mp_map(b, 4);
    kv_bool(b, "IsMCP", 0);
    kv_str(b, "JSONRPCMethod", "");
    kv_str(b, "PrimitiveType", "");
    kv_str(b, "PrimitiveName", "");
    kv_str(b, "CollectionName", "");
}

/* ---- the buffer and the pushes ------------------------------------------------------ */

static void publish(tp_analytics_t *an)
{
    atomic_store_explicit(&an->w->me->an_buffered, an->n, memory_order_relaxed);
}

static void flush(tp_analytics_t *an);

static void on_expire(void *arg, const redisReply *rep, const char *err)
{
    (void)arg;
    (void)rep;
    if (err != NULL)
        tp_log_debug("analytics: list TTL not set: %s", err);
}

static void drained(tp_analytics_t *an)
{
    void (*then)(tp_worker_t *) = an->drained;
    an->drained = NULL;
    uv_timer_stop(&an->drain_timer);
    if (then != NULL)
        then(an->w);
}

static void on_pushed(void *arg, const redisReply *rep, const char *err)
{
    tp_analytics_t *an = arg;
    tp_shm_worker_t *me = an->w->me;
    size_t k = an->flushing;
    an->flushing = 0;
    if (err == NULL && rep->type == REDIS_REPLY_ERROR)
        err = rep->str;
    an->redis_ok = err == NULL;
    if (err != NULL) {
        /* kept for the next try; new records beyond the buffer are dropped */
        tp_log_debug("analytics: push of %zu records failed: %s", k, err);
        if (an->drained != NULL)
            drained(an);
        return;
    }
    size_t bytes = 0;
    for (size_t i = 0; i < k; i++)
        bytes += an->lens[i];
    tp_buf_consume(&an->buf, bytes);
    memmove(an->lens, an->lens + k, (an->n - k) * sizeof(*an->lens));
    an->n -= k;
    tp_counter_add(&me->an_flushed, k);
    publish(an);
    if (an->dropping) {
        tp_log_warn("analytics: pushing again; %llu records were dropped while Redis was away",
                    (unsigned long long)an->dropped_burst);
        an->dropping = 0;
        an->dropped_burst = 0;
    }
    tp_worker_t *w = an->w;
    int64_t ttl = w->conf->analytics_config.storage_expiration_time;
    uint64_t now = uv_now(&w->loop);
    if (ttl > 0 && now - an->expire_ms[an->shard] >= 1000) {
        /* Tyk's purger: the list gets a TTL when it has none */
        char sttl[32];
        snprintf(sttl, sizeof(sttl), "%lld", (long long)ttl);
        an->expire_ms[an->shard] = now;
        tp_redis_cmd(w->redis, on_expire, an, "EXPIRE %s %s NX", an->key, sttl);
    }
    if (an->n >= BATCH_MAX || (an->drained != NULL && an->n > 0))
        flush(an);
    else if (an->drained != NULL)
        drained(an);
}

static void flush(tp_analytics_t *an)
{
    tp_worker_t *w = an->w;
    if (an->flushing || an->n == 0 || w->redis == NULL)
        return;
    size_t k = an->n < BATCH_MAX ? an->n : BATCH_MAX;
    const char **argv = tp_malloc((k + 2) * sizeof(*argv));
    size_t *lens = tp_malloc((k + 2) * sizeof(*lens));
    /* the key: one of Tyk's eleven with enable_multiple_analytics_keys */
    an->shard = w->conf->analytics_config.enable_multiple_analytics_keys ? rand() % 10 : 10;
    if (an->shard < 10)
        snprintf(an->key, sizeof(an->key), "%s_%d", LIST_KEY, an->shard);
    else
        snprintf(an->key, sizeof(an->key), "%s", LIST_KEY);
    argv[0] = "RPUSH";
    lens[0] = 5;
    argv[1] = an->key;
    lens[1] = strlen(an->key);
    size_t off = 0;
    for (size_t i = 0; i < k; i++) {
        argv[i + 2] = an->buf.data + off;
        lens[i + 2] = an->lens[i];
        off += an->lens[i];
    }
    an->flushing = (int)k;
    tp_redis_cmdv(w->redis, on_pushed, an, (int)(k + 2), argv, lens);
    free(argv);
    free(lens);
}

static void on_timer(uv_timer_t *t)
{
    flush(t->data);
}

static void analytics_log(tp_req_t *req)
{
    if (req->track == NULL || req->not_recorded)
        return;
    tp_worker_t *w = req->conn->w;
    tp_analytics_t *an = w->analytics;
    const tp_compiled_t *c = tp_compiled(w, req);
    if (an == NULL || c == NULL || c->analytics == NULL)
        return;
    tp_shm_worker_t *me = w->me;
    tp_counter_add(&me->an_recorded, 1);
    /* records_buffer_size waiting, besides a push under way while Redis
     * takes them; all of them count while it does not */
    size_t leaving = an->redis_ok ? (size_t)an->flushing : 0;
    if (an->n - leaving >= an->cap) {
        tp_counter_add(&me->an_dropped, 1);
        an->dropped_burst++;
        if (!an->dropping) {
            tp_log_warn("analytics: %zu records buffered and Redis does not take them; "
                        "dropping new ones until it does",
                        an->n);
            an->dropping = 1;
        }
        return;
    }
    size_t before = an->buf.len;
    encode(&an->buf, req, c->analytics, &an->tmp);
    an->lens[an->n++] = an->buf.len - before;
    publish(an);
    if (an->n >= BATCH_MAX)
        flush(an);
}

static int analytics_wanted(const tp_chain_api_t *a)
{
    return a->analytics && a->records;
}

const tp_stage_t tp_stage_analytics = {
    .name = "analytics", .wanted = analytics_wanted, .log = analytics_log};

/* ---- the worker's part ----------------------------------------------------------------- */

void tp_analytics_init(tp_worker_t *w)
{
    const tp_conf_t *conf = w->conf;
    if (!conf->enable_analytics)
        return;
    tp_analytics_t *an = tp_calloc(1, sizeof(*an));
    an->w = w;
    an->cap = (size_t)conf->analytics_config.records_buffer_size;
    an->lens = tp_calloc(an->cap + BATCH_MAX, sizeof(*an->lens));
    an->redis_ok = 1;
    const tp_strlist_t *cp = &conf->analytics_config.normalise_urls.custom_patterns;
    an->custom = tp_calloc(cp->n + 1, sizeof(*an->custom));
    for (size_t i = 0; i < cp->n; i++) {
        tp_buf_t posix = {0};
        char err[256];
        int rc = tp_re2_to_posix(cp->v[i], &posix, err, sizeof(err));
        if (rc == 0 && regcomp(&an->custom[an->ncustom], tp_buf_cstr(&posix), REG_EXTENDED) != 0) {
            snprintf(err, sizeof(err), "it does not compile");
            rc = -1;
        }
        if (rc == 0)
            an->ncustom++;
        else if (w->id == 0)
            tp_log_warn("analytics_config.normalise_urls.custom_patterns[%zu] \"%s\" skipped: %s",
                        i, cp->v[i], err);
        tp_buf_free(&posix);
    }
    uv_timer_init(&w->loop, &an->timer);
    an->timer.data = an;
    uv_timer_start(&an->timer, on_timer, FLUSH_EVERY_MS, FLUSH_EVERY_MS);
    uv_unref((uv_handle_t *)&an->timer);
    uv_timer_init(&w->loop, &an->drain_timer);
    an->drain_timer.data = an;
    uv_unref((uv_handle_t *)&an->drain_timer);
    w->analytics = an;
}

static void on_drain_timeout(uv_timer_t *t)
{
    tp_analytics_t *an = t->data;
    tp_log_warn("analytics: %zu records not pushed before exit", an->n);
    drained(an);
}

void tp_analytics_drain(tp_worker_t *w, void (*then)(tp_worker_t *w))
{
    tp_analytics_t *an = w->analytics;
    if (an == NULL || an->n == 0 || w->redis == NULL) {
        then(w);
        return;
    }
    an->drained = then;
    uv_ref((uv_handle_t *)&an->drain_timer);
    uv_timer_start(&an->drain_timer, on_drain_timeout, DRAIN_MAX_MS, 0);
    flush(an);
}
