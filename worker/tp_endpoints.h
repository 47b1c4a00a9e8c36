/*
 * worker/tp_endpoints.h: a list of extended_paths entries matched by
 * version, method and path, as Tyk's URLSpec matching does for
 * hard_timeouts, circuit_breakers and do_not_track_endpoints.
 *
 * Used by: stages that compile such a section per API when the worker
 * takes a generation (tp_timeouts.c, tp_breaker.c, tp_analytics.c). Each
 * entry's path is compiled once with the gateway's path matching rules
 * (prefix, suffix, case); tp_endpoints_match() tries the three paths Tyk
 * matches on (TYK-COMPAT 3.6). The caller keeps its own data per entry in
 * an array indexed like the list (tp_endpoints_add returns the index).
 */
#ifndef TP_ENDPOINTS_H
#define TP_ENDPOINTS_H

#include <stddef.h>

#include "tp_json.h"

typedef struct tp_req_s tp_req_t;
typedef struct tp_api_s tp_api_t;
typedef struct tp_conf_s tp_conf_t;
typedef struct tp_endpoint_s tp_endpoint_t;

typedef struct tp_endpoints_s {
    tp_endpoint_t *e;
    size_t n;
    const char *section;    /* "hard_timeouts", for log lines */
    unsigned empty_any : 1; /* an entry without "method" matches every method */
} tp_endpoints_t;

/* The name of a version_data.versions member <v>: its "name", else its key. */
const char *tp_version_name(const cJSON *v);

/* Adds entry <e> (its "path" and "method") of <version>. Returns its
 * index, or -1 when it is skipped: no path, "disabled", or a path that does
 * not compile (logged with the API's id and file). */
int tp_endpoints_add(tp_endpoints_t *l, const char *version, const cJSON *e, const tp_api_t *api,
                     const tp_conf_t *conf);

/* The first entry of the request's version that matches its method and
 * path, or -1. */
int tp_endpoints_match(const tp_endpoints_t *l, tp_req_t *req);

void tp_endpoints_free(tp_endpoints_t *l);

/* The first of the <n> entries at <arr> (each <size> bytes, starting with
 * a tp_epmatch_t: conf/tp_api_mw.h) that matches the request's method and
 * its three rule paths, or NULL. */
const void *tp_epmatch_first(tp_req_t *req, const void *arr, size_t n, size_t size);

#endif
