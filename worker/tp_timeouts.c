/*
 * worker/tp_timeouts.c: the "timeouts" stage, Tyk's hard timeouts
 * (extended_paths.hard_timeouts, and a version's global_enforce_timeout
 * when no entry matches; TYK-COMPAT 21.5).
 *
 * Compiled per API when the worker takes a generation; the stage finds the
 * timeout of the request's version, method and path and leaves it in
 * req->hard_timeout_ms. The proxy turns it into a deadline when it starts
 * (as Tyk's reverse proxy puts it on the upstream call's context): the
 * whole upstream exchange, a websocket session included, must end by then;
 * 504 "Upstream service reached hard timeout." when no response started.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tp_endpoints.h"
#include "tp_err.h"
#include "tp_json.h"
#include "tp_log.h"
#include "tp_worker.h"

typedef struct global_s {
    char *version;
    uint64_t ms;
} global_t;

struct tp_timeouts_s {
    tp_endpoints_t ep;
    uint64_t *ms; /* per entry of ep */
    global_t *g;
    size_t ng;
};

/* A Go time.Duration string ("1.5s", "300ms", "1m30s"): its milliseconds
 * (rounded up), or -1 when it is not one. */
int64_t tp_go_duration_ms(const char *s)
{
    static const struct {
        const char *unit;
        double ms;
    } units[] = {{"ns", 1e-6}, {"us", 1e-3}, {"\xc2\xb5s", 1e-3}, {"ms", 1},
                 {"s", 1000},  {"m", 60000}, {"h", 3600000}};
    double total = 0;
    const char *p = s;
    if (*p == '\0')
        return -1;
    if (strcmp(p, "0") == 0)
        return 0;
    while (*p != '\0') {
        char *end;
        double v = strtod(p, &end);
        if (end == p || v < 0)
            return -1;
        p = end;
        size_t best = 0;
        int found = -1;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            size_t l = strlen(units[i].unit);
            if (strncmp(p, units[i].unit, l) == 0 && l > best) {
                best = l;
                found = (int)i;
            }
        }
        if (found < 0)
            return -1;
        total += v * units[found].ms;
        p += best;
    }
    if (total > 9.0e15)
        return -1;
    int64_t ms = (int64_t)total;
    return (double)ms < total ? ms + 1 : ms;
}

void tp_timeouts_free(tp_timeouts_t *t)
{
    if (t == NULL)
        return;
    tp_endpoints_free(&t->ep);
    for (size_t i = 0; i < t->ng; i++)
        free(t->g[i].version);
    free(t->ms);
    free(t->g);
    free(t);
}

/* An entry's timeout: "duration" (Tyk 5.14+) wins over "timeout" (s). */
static int64_t entry_ms(const cJSON *e, const tp_api_t *api, const char *path)
{
    const cJSON *d = tp_json_get(e, "duration");
    if (cJSON_IsString(d) && d->valuestring[0] != '\0') {
        int64_t ms = tp_go_duration_ms(d->valuestring);
        if (ms < 0)
            tp_log_warn("API %s (%s): hard_timeouts \"%s\": duration \"%s\" is not a Go "
                        "duration; \"timeout\" applies",
                        api->api_id, api->file, path, d->valuestring);
        else
            return ms;
    }
    const cJSON *t = tp_json_get(e, "timeout");
    return cJSON_IsNumber(t) ? (int64_t)(t->valuedouble * 1000) : 0;
}

static void add_entries(tp_timeouts_t *t, const char *version, const cJSON *list,
                        const tp_api_t *api, const tp_conf_t *c)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, list)
    {
        const cJSON *path = tp_json_get(e, "path");
        if (!cJSON_IsString(path) || cJSON_IsTrue(tp_json_get(e, "disabled")))
            continue;
        int64_t ms = entry_ms(e, api, path->valuestring);
        if (ms <= 0) {
            tp_log_warn("API %s (%s): hard_timeouts \"%s\" skipped: no timeout above 0",
                        api->api_id, api->file, path->valuestring);
            continue;
        }
        int i = tp_endpoints_add(&t->ep, version, e, api, c);
        if (i < 0)
            continue;
        t->ms = tp_realloc(t->ms, t->ep.n * sizeof(*t->ms));
        t->ms[i] = (uint64_t)ms;
    }
}

tp_timeouts_t *tp_timeouts_compile(const cJSON *def, const tp_api_t *api, const tp_conf_t *conf)
{
    tp_timeouts_t *t = tp_calloc(1, sizeof(*t));
    t->ep.section = "hard_timeouts";
    const cJSON *versions = tp_json_get(tp_json_get(def, "version_data"), "versions"), *v;
    cJSON_ArrayForEach(v, versions)
    {
        const char *vn = tp_version_name(v);
        add_entries(t, vn, tp_json_get(tp_json_get(v, "extended_paths"), "hard_timeouts"), api,
                    conf);
        const cJSON *g = tp_json_get(v, "global_enforce_timeout");
        if (cJSON_IsString(g) && g->valuestring[0] != '\0') {
            int64_t ms = tp_go_duration_ms(g->valuestring);
            if (ms <= 0) {
                tp_log_warn("API %s (%s): version %s: global_enforce_timeout \"%s\" skipped: "
                            "not a Go duration above 0",
                            api->api_id, api->file, vn, g->valuestring);
                continue;
            }
            t->g = tp_realloc(t->g, (t->ng + 1) * sizeof(*t->g));
            t->g[t->ng].version = tp_strdup(vn);
            t->g[t->ng++].ms = (uint64_t)ms;
        }
    }
    if (t->ep.n == 0 && t->ng == 0) {
        tp_timeouts_free(t);
        return NULL;
    }
    return t;
}

static tp_stage_rc_t timeouts_run(tp_req_t *req)
{
    tp_worker_t *w = req->conn->w;
    const tp_compiled_t *c = tp_compiled(w, req);
    if (c == NULL || c->timeouts == NULL || req->version == NULL)
        return TP_STAGE_NEXT;
    const tp_timeouts_t *t = c->timeouts;
    int at = tp_endpoints_match(&t->ep, req);
    if (at >= 0) {
        req->hard_timeout_ms = t->ms[at];
        return TP_STAGE_NEXT;
    }
    const char *vn = req->version->name;
    for (size_t i = 0; i < t->ng; i++)
        if (strcmp(t->g[i].version, vn) == 0)
            req->hard_timeout_ms = t->g[i].ms;
    return TP_STAGE_NEXT;
}

static int timeouts_wanted(const tp_chain_api_t *a)
{
    return a->timeouts;
}

const tp_stage_t tp_stage_timeouts = {
    .name = "timeouts", .wanted = timeouts_wanted, .run = timeouts_run};
