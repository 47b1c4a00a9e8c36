/*
 * worker/tp_jwks.c: JSON Web Key Sets behind jwt_source URLs, per worker
 * (keyed by URL, so they outlive reloads), as Tyk's getSecretFromURL keeps
 * them (TYK-COMPAT 17.4):
 *  - the first request that needs a set waits while it is fetched
 *    (tp_fetch.c, over HTTP or HTTPS, jwt_ssl_insecure_skip_verify);
 *    others that need it meanwhile wait for the same fetch;
 *  - a set is fresh for jwks.cache.timeout seconds (240); after that the
 *    stale set keeps serving while a new one is fetched in the background;
 *  - a kid the set does not have makes one new fetch, at most every 10 s
 *    (keys rotated at the identity provider are found without waiting out
 *    the cache; Tyk waits);
 *  - a fetch that fails keeps the old set; with none, requests get 403 and
 *    the next try is 5 s later.
 * Each set has a version that changes when its content does, so a token
 * remembered as verified with an older set is verified again.
 */
#include <stdlib.h>
#include <string.h>

#include "tp_err.h"
#include "tp_fetch.h"
#include "tp_json.h"
#include "tp_keyhash.h"
#include "tp_log.h"
#include "tp_time.h"
#include "tp_worker.h"

#define FETCH_TIMEOUT_MS 10000
#define RETRY_MS 5000        /* after a failed fetch with no set */
#define UNKNOWN_KID_MS 10000 /* an unknown kid refetches at most this often */

typedef struct tp_jwks_s {
    struct tp_jwks_s *next;
    tp_worker_t *w;
    char *url;
    cJSON *set;    /* {"keys": [...]}, NULL until a fetch succeeded */
    uint64_t hash; /* of the body the set came from */
    uint64_t version;
    int64_t fetched, fresh_until, retry_at; /* monotonic ms */
    tp_fetch_t *fetch;
    tp_list_t waiters; /* tp_jwks_wait_t */
} jwks_t;

static jwks_t *find(tp_worker_t *w, const char *url)
{
    for (jwks_t *s = w->jwks; s != NULL; s = s->next)
        if (strcmp(s->url, url) == 0)
            return s;
    jwks_t *s = tp_calloc(1, sizeof(*s));
    s->w = w;
    s->url = tp_strdup(url);
    tp_list_init(&s->waiters);
    s->next = w->jwks;
    w->jwks = s;
    return s;
}

static void fetched(void *arg, int status, const char *body, size_t len, const char *err)
{
    jwks_t *s = arg;
    tp_worker_t *w = s->w;
    int64_t now = tp_time_mono_ms();
    s->fetch = NULL;
    char why[160] = "";
    cJSON *set = NULL;
    if (status != 200) {
        if (status == 0)
            snprintf(why, sizeof(why), "%s", err != NULL ? err : "failed");
        else
            snprintf(why, sizeof(why), "answered %d", status);
    } else if ((set = tp_json_parse(body, len, why, sizeof(why))) == NULL) {
        /* why says where the JSON broke */
    } else if (!cJSON_IsArray(tp_json_get(set, "keys"))) {
        snprintf(why, sizeof(why), "no \"keys\" array");
        cJSON_Delete(set);
        set = NULL;
    }
    if (set != NULL) {
        uint64_t h[2];
        tp_murmur3_128(body, len, 0, h);
        if (s->set == NULL || h[0] != s->hash)
            s->version++;
        cJSON_Delete(s->set);
        s->set = set;
        s->hash = h[0];
        s->fetched = now;
        int64_t t = w->conf->jwks_cache_timeout > 0 ? w->conf->jwks_cache_timeout : 240;
        s->fresh_until = now + t * 1000;
    } else {
        tp_log_warn("JWKS %s: %s%s", s->url, why,
                    s->set != NULL ? "; the keys fetched before stay in use" : "");
        s->retry_at = now + RETRY_MS;
    }
    /* every waiter tries again, with the set or without */
    while (!tp_list_empty(&s->waiters)) {
        tp_list_t *l = s->waiters.next;
        tp_list_remove(l);
        tp_jwks_wait_t *wt = tp_container_of(l, tp_jwks_wait_t, link);
        wt->again(wt->req);
    }
}

static void start(jwks_t *s)
{
    if (s->fetch != NULL)
        return;
    s->fetch = tp_fetch_get(s->w, s->url, s->w->conf->jwt_ssl_insecure_skip_verify,
                            FETCH_TIMEOUT_MS, fetched, s);
    if (s->fetch == NULL) {
        tp_log_warn("JWKS %s: cannot be fetched (not an http or https URL?)", s->url);
        s->retry_at = tp_time_mono_ms() + RETRY_MS;
    }
}

int tp_jwks_get(tp_worker_t *w, const char *url, const cJSON **set, uint64_t *version)
{
    jwks_t *s = find(w, url);
    int64_t now = tp_time_mono_ms();
    if (s->set != NULL && now >= s->fresh_until && now >= s->retry_at)
        start(s); /* stale: refreshed in the background */
    if (s->set == NULL && s->fetch == NULL && now >= s->retry_at)
        start(s);
    *set = s->set;
    *version = s->version;
    return s->set == NULL && s->fetch != NULL ? -1 : 0;
}

int tp_jwks_refetch(tp_worker_t *w, const char *url)
{
    jwks_t *s = find(w, url);
    int64_t now = tp_time_mono_ms();
    if (s->fetch == NULL && (now - s->fetched < UNKNOWN_KID_MS || now < s->retry_at))
        return 0;
    start(s);
    return s->fetch != NULL;
}

void tp_jwks_wait(tp_worker_t *w, const char *url, tp_jwks_wait_t *wt)
{
    tp_list_insert_tail(&find(w, url)->waiters, &wt->link);
}

void tp_jwks_unwait(tp_jwks_wait_t *wt)
{
    if (tp_list_linked(&wt->link))
        tp_list_remove(&wt->link);
}

const cJSON *tp_jwks_key(const cJSON *set, const char *kid)
{
    const cJSON *k;
    cJSON_ArrayForEach(k, tp_json_get(set, "keys"))
    {
        const cJSON *id = tp_json_get(k, "kid");
        if (cJSON_IsString(id) && strcmp(id->valuestring, kid) == 0)
            return k;
    }
    return NULL;
}
