/*
 * worker/tp_compile.c: what each API of a generation becomes in a worker,
 * compiled when the worker takes the generation (as Tyk's processSpec runs
 * per API at load): its rules (tp_api_rules.c) and its chain of stages
 * (tp_chain.c), one tp_compiled_t per API and slot.
 *
 * An API whose rules cannot be built is logged once, here, and answers
 * Tyk's 500 for a failed proxy; the others are unaffected.
 */
#include <stdlib.h>
#include <string.h>

#include "tp_api_mw.h"
#include "tp_err.h"
#include "tp_json.h"
#include "tp_log.h"
#include "tp_worker.h"

static void compiled_free(tp_compiled_t *c)
{
    tp_api_rules_free(c->rules);
    tp_analytics_api_free(c->analytics);
    tp_tls_certset_free(c->mtls);
    tp_timeouts_free(c->timeouts);
    tp_breakers_api_free(c->breakers);
    tp_jwt_api_free(c->jwt);
    tp_cors_free(c->cors);
    tp_basic_api_free(c->basic);
    tp_hmac_api_free(c->hmac);
    tp_jsmw_api_free(c->jsmw);
    memset(c, 0, sizeof(*c));
}

/* Tyk's processSpec: AuthKey runs when use_standard_auth is set or no
 * other auth method is. Only methods this gateway has count: an API that
 * asks for one it has not still needs a key, never nothing. */
static int token_auth(const cJSON *def)
{
    static const char *const others[] = {"enable_jwt", "use_basic_auth",
                                         "enable_signature_checking"};
    if (cJSON_IsTrue(tp_json_get(def, "use_standard_auth")))
        return 1;
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
        if (cJSON_IsTrue(tp_json_get(def, others[i])))
            return 0;
    return 1;
}

/* Which of the extended_paths stages some version of the API needs. */
static void mw_wanted(const tp_api_rules_t *r, tp_chain_api_t *a)
{
    for (size_t i = 0; i < r->nversions; i++) {
        const tp_version_t *v = &r->versions[i];
        a->headers |= v->nglobal_del > 0 || v->global_add.lines != NULL || v->nhdr_rules > 0;
        a->resp_headers |= v->nresp_rules > 0 || v->ngresp_del > 0 || v->gresp_add.lines != NULL;
        if (v->mw == NULL)
            continue;
        a->rewrites |= v->mw->nrw > 0;
        a->rewrite_body |= v->mw->payload_triggers != 0;
        a->loops |= v->mw->loops != 0;
        a->mtransforms |= v->mw->nmt > 0;
        a->size_limits |= v->mw->nsl > 0 || v->mw->global_size > 0;
        a->validate |= v->mw->nvj > 0;
        a->transform |= v->mw->ntf > 0;
        a->tracked |= v->mw->ntrack > 0;
        a->resp_transform |= v->mw->nrtf > 0;
        a->virtual |= v->mw->nvirt > 0;
    }
}

static void compile_api(tp_worker_t *w, tp_compiled_t *out, const tp_api_t *api,
                        const tp_conf_t *conf, struct tp_breakers_s *breakers, int quiet)
{
    char err[512];
    cJSON *def = tp_json_parse(api->def_json, strlen(api->def_json), err, sizeof(err));
    if (def != NULL && tp_api_rules_build(def, conf, &out->rules, err, sizeof(err)) < 0)
        out->rules = NULL;
    if (out->rules != NULL) {
        out->analytics = tp_analytics_compile(def, api, conf);
        out->timeouts = tp_timeouts_compile(def, api, conf);
        out->uptime_lb =
            api->enable_load_balancing && api->ntargets > 1 &&
            cJSON_IsTrue(tp_json_get(tp_json_get(def, "proxy"), "check_host_against_uptime_tests"));
        out->breakers = breakers != NULL ? tp_breakers_compile(def, api, conf, breakers) : NULL;
        out->jwt = tp_jwt_compile(def, api, quiet);
        out->cors = tp_cors_compile(def);
        out->basic = tp_basic_compile(def, api, quiet);
        out->hmac = tp_hmac_compile(def);
        out->jsmw = tp_jsmw_compile(w, def, api);
        /* the chain of stages this API uses */
        int basic_body = tp_basic_extracts(out->basic);
        tp_chain_api_t a = {.keyless = api->use_keyless != 0,
                            .api_limits = out->rules->has_api_limits != 0,
                            .analytics = out->analytics != NULL,
                            .notrack = tp_analytics_has_notrack(out->analytics),
                            .records = conf->enable_analytics != 0,
                            .metrics = conf->tp.metrics_port != 0,
                            .mtls = api->use_mtls != 0,
                            .timeouts = out->timeouts != NULL,
                            .breakers = out->breakers != NULL,
                            .jwt = out->jwt != NULL,
                            .cors = out->cors != NULL,
                            .basic = out->basic != NULL,
                            .hmac = out->hmac != NULL,
                            .no_token = !token_auth(def),
                            .batch =
                                cJSON_IsTrue(tp_json_get(def, "enable_batch_request_support"))};
        mw_wanted(out->rules, &a);
        tp_jsmw_wanted(out->jsmw, &a);
        if (a.js_auth && !cJSON_IsTrue(tp_json_get(def, "use_standard_auth")))
            a.no_token = 1; /* auth_check is the API's auth method */
        a.cache = out->rules->cache != NULL;
        a.cache_body = a.cache && out->rules->cache->body_hash;
        a.basic_body = basic_body != 0;
        if (api->use_mtls) {
            out->mtls = tp_tls_certset_new();
            const char *pem = api->mtls_pem != NULL ? api->mtls_pem : "";
            char what[300];
            snprintf(what, sizeof(what), "client_certificates of %s", api->file);
            if (pem[0] != '\0' &&
                tp_tls_certset_add(out->mtls, pem, strlen(pem), what, err, sizeof(err)) < 0) {
                compiled_free(out);
                cJSON_Delete(def);
                tp_log_error("API %s (%s): %s", api->api_id, api->file, err);
                return;
            }
        }
        if (tp_chain_build_api(&out->chain, &a, tp_respond_failed) == 0) {
            cJSON_Delete(def);
            return;
        }
        snprintf(err, sizeof(err), "more than %d stages", TP_CHAIN_MAX);
        compiled_free(out);
    }
    cJSON_Delete(def);
    tp_log_error("API %s (%s): %s", api->api_id, api->file, err);
}

static void slot_free(tp_worker_t *w, unsigned s)
{
    for (size_t i = 0; i < w->ncompiled[s]; i++)
        compiled_free(&w->compiled[s][i]);
    free(w->compiled[s]);
    w->compiled[s] = NULL;
    w->ncompiled[s] = 0;
}

void tp_compile_generation(tp_worker_t *w, const tp_snapshot_t *snap)
{
    /* the slot held an older generation nobody here reads any more */
    unsigned s = snap->slot;
    slot_free(w, s);
    w->compiled[s] = tp_calloc(snap->napis + 1, sizeof(*w->compiled[s]));
    w->ncompiled[s] = snap->napis;
    w->any_mtls = 0;
    for (size_t i = 0; i < snap->napis; i++) {
        compile_api(w, &w->compiled[s][i], snap->apis[i], w->conf, w->shm->breakers, w->id != 0);
        w->any_mtls |= snap->apis[i]->use_mtls != 0;
    }
}

const tp_compiled_t *tp_compiled(const tp_worker_t *w, const tp_req_t *req)
{
    const tp_compiled_t *c = &w->compiled[req->snap->slot][req->route->api->idx];
    return c->rules != NULL ? c : NULL;
}
