/*
 * worker/tp_breaker.c: the "breaker" stage, Tyk's circuit breakers
 * (extended_paths.circuit_breakers; TYK-COMPAT 21.5).
 *
 * Compiled per API when the worker takes a generation: each entry gets its
 * breaker in the node's shared table (shm/tp_shm_breaker.c), so all
 * workers count into, and obey, the same one. The stage runs just before
 * the proxy (Tyk checks breakers when it proxies, after the middleware):
 * an open breaker answers 503 "Service temporarily unavailable." without
 * asking the upstream. Its log half counts the answer: a 5xx, or an
 * upstream that could not be reached (the gateway's own 5xx), is a failure.
 * Trips and resets are logged with Tyk's event names.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_endpoints.h"
#include "tp_err.h"
#include "tp_json.h"
#include "tp_log.h"
#include "tp_shm_breaker.h"
#include "tp_time.h"
#include "tp_worker.h"

typedef struct tp_breaker_entry_s {
    tp_breaker_conf_t conf;
    tp_breaker_t *b;
    char label[128]; /* "<api_id> <METHOD> <path>" */
} entry_t;

struct tp_breakers_api_s {
    tp_endpoints_t ep;
    entry_t *e; /* per entry of ep */
};

void tp_breakers_api_free(tp_breakers_api_t *a)
{
    if (a == NULL)
        return;
    tp_endpoints_free(&a->ep);
    free(a->e);
    free(a);
}

/* An entry's settings; -1 (logged) when they cannot make a breaker. */
static int entry_conf(const cJSON *e, const tp_api_t *api, const char *path, tp_breaker_conf_t *out)
{
    const cJSON *th = tp_json_get(e, "threshold_percent");
    const cJSON *n = tp_json_get(e, "samples");
    const cJSON *r = tp_json_get(e, "return_to_service_after");
    const char *why = NULL;
    if (!cJSON_IsNumber(th) || th->valuedouble <= 0 || th->valuedouble > 1)
        why = "threshold_percent must be a number above 0 and at most 1";
    else if (!cJSON_IsNumber(n) || n->valuedouble < 1)
        why = "samples must be a number of at least 1";
    else if (!cJSON_IsNumber(r) || r->valuedouble < 1)
        why = "return_to_service_after must be at least 1 (seconds)";
    if (why != NULL) {
        tp_log_warn("API %s (%s): circuit_breakers \"%s\" skipped: %s", api->api_id, api->file,
                    path, why);
        return -1;
    }
    out->threshold = th->valuedouble;
    out->samples = n->valuedouble > 1e6 ? 1000000 : (uint32_t)n->valuedouble;
    out->return_ms = (int64_t)(r->valuedouble * 1000);
    out->half_open = !cJSON_IsTrue(tp_json_get(e, "disable_half_open_state"));
    return 0;
}

tp_breakers_api_t *tp_breakers_compile(const cJSON *def, const tp_api_t *api, const tp_conf_t *conf,
                                       tp_breakers_t *table)
{
    tp_breakers_api_t *a = tp_calloc(1, sizeof(*a));
    a->ep.section = "circuit_breakers";
    const cJSON *versions = tp_json_get(tp_json_get(def, "version_data"), "versions"), *v;
    cJSON_ArrayForEach(v, versions)
    {
        const char *vn = tp_version_name(v);
        const cJSON *e;
        cJSON_ArrayForEach(e, tp_json_get(tp_json_get(v, "extended_paths"), "circuit_breakers"))
        {
            const cJSON *path = tp_json_get(e, "path");
            const cJSON *method = tp_json_get(e, "method");
            tp_breaker_conf_t bc;
            if (!cJSON_IsString(path) || cJSON_IsTrue(tp_json_get(e, "disabled")) ||
                entry_conf(e, api, path->valuestring, &bc) < 0)
                continue;
            const char *m = cJSON_IsString(method) ? method->valuestring : "";
            char key[1024];
            int klen = snprintf(key, sizeof(key), "%s%c%s%c%s%c%s", api->api_id, 0, vn, 0, m, 0,
                                path->valuestring);
            if (klen < 0 || (size_t)klen >= sizeof(key)) {
                tp_log_warn("API %s (%s): circuit_breakers \"%s\" skipped: path too long",
                            api->api_id, api->file, path->valuestring);
                continue;
            }
            char label[128];
            snprintf(label, sizeof(label), "%s %s %s", api->api_id, m[0] ? m : "-",
                     path->valuestring);
            tp_breaker_t *b = tp_breaker_get(table, key, (size_t)klen, label);
            if (b == NULL) {
                tp_log_warn("API %s (%s): circuit_breakers \"%s\" skipped: the node's breaker "
                            "table is full",
                            api->api_id, api->file, path->valuestring);
                continue;
            }
            int i = tp_endpoints_add(&a->ep, vn, e, api, conf);
            if (i < 0)
                continue;
            a->e = tp_realloc(a->e, a->ep.n * sizeof(*a->e));
            a->e[i].conf = bc;
            a->e[i].b = b;
            snprintf(a->e[i].label, sizeof(a->e[i].label), "%s", label);
        }
    }
    if (a->ep.n == 0) {
        tp_breakers_api_free(a);
        return NULL;
    }
    return a;
}

static void event(const entry_t *e, int ev, uint32_t fails, uint32_t total)
{
    if (ev == TP_BREAKER_TRIPPED)
        tp_log_warn("BreakerTripped: circuit breaker %s opened: %u of %u requests failed in "
                    "10 s; 503 for up to %llds",
                    e->label, fails, total, (long long)(e->conf.return_ms / 1000));
    else if (ev == TP_BREAKER_RESET)
        tp_log_info("BreakerReset: circuit breaker %s closed", e->label);
}

static tp_stage_rc_t breaker_run(tp_req_t *req)
{
    tp_worker_t *w = req->conn->w;
    const tp_compiled_t *c = tp_compiled(w, req);
    if (c == NULL || c->breakers == NULL)
        return TP_STAGE_NEXT;
    int i = tp_endpoints_match(&c->breakers->ep, req);
    if (i < 0)
        return TP_STAGE_NEXT;
    const entry_t *e = &c->breakers->e[i];
    int ev;
    int rc = tp_breaker_allow(e->b, &e->conf, (int64_t)tp_time_mono_ms(), &ev);
    event(e, ev, 0, 0);
    if (rc == TP_BREAKER_REFUSE) {
        tp_respond_error(req, 503, "Service temporarily unavailable.");
        return TP_STAGE_DONE;
    }
    req->breaker = e;
    req->breaker_trial = rc == TP_BREAKER_TRIAL;
    return TP_STAGE_NEXT;
}

static void breaker_log(tp_req_t *req)
{
    const entry_t *e = req->breaker;
    if (e == NULL)
        return;
    uint32_t fails, total;
    int ev = tp_breaker_record(e->b, &e->conf, req->status >= 500 || req->status == 0,
                               req->breaker_trial, (int64_t)tp_time_mono_ms(), &fails, &total);
    event(e, ev, fails, total);
}

static int breaker_wanted(const tp_chain_api_t *a)
{
    return a->breakers;
}

const tp_stage_t tp_stage_breaker = {
    .name = "breaker", .wanted = breaker_wanted, .run = breaker_run, .log = breaker_log};
