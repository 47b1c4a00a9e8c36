/*
 * master/tp_notify.c: systemd's notify protocol without libsystemd, and
 * the cluster notifications Tyk nodes exchange on tyk.cluster.notifications.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tp_err.h"
#include "tp_json.h"
#include "tp_log.h"
#include "tp_master.h"
#include "tp_notice.h"
#include "tp_redis_purge.h"
#include "tp_shm_session.h"

void tp_sd_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || path[0] == '\0')
        return;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n >= sizeof(sa.sun_path))
        return;
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@')
        sa.sun_path[0] = '\0'; /* an abstract socket */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0)
        tp_log_debug("sd_notify: %s", strerror(errno));
    close(fd);
}

static int signature_ok(const char *cmd, const char *payload, const char *secret, const char *sig)
{
    char hex[65];
    tp_notice_signature(cmd, payload, secret, hex);
    return strcmp(sig, hex) == 0; /* exact, lower-case hex, as Tyk compares */
}

typedef struct purge_s {
    tp_master_t *m;
    char api[256];
    int evicted;
} purge_t;

/* Redis is purged: the front drops what was stored meanwhile too, so it
 * never holds an entry Redis lost. */
static void on_cache_purged(void *arg, long deleted, const char *err)
{
    purge_t *p = arg;
    uint8_t d[32];
    tp_scache_digest(p->api, strlen(p->api), NULL, 0, d);
    if (p->m->shm->rcache != NULL)
        p->evicted += tp_scache_evict_store(p->m->shm->rcache, d);
    if (err != NULL)
        tp_log_warn("DeleteAPICache for API %s: the cached responses could not all be deleted: %s",
                    p->api, err);
    else
        tp_log_info("DeleteAPICache for API %s: %ld cached responses deleted from Redis, %d from "
                    "this node's front",
                    p->api, deleted, p->evicted);
    free(p);
}

void tp_master_notification(tp_master_t *m, const char *text, size_t len)
{
    static const char *const reloads[] = {"GroupReload", "ApiUpdated",    "ApiRemoved",
                                          "ApiAdded",    "PolicyChanged", NULL};
    char err[256];
    cJSON *msg = tp_json_parse(text, len, err, sizeof(err));
    const cJSON *cmd = msg != NULL ? tp_json_get(msg, "command") : NULL;
    const cJSON *payload = msg != NULL ? tp_json_get(msg, "payload") : NULL;
    const cJSON *sig = msg != NULL ? tp_json_get(msg, "signature") : NULL;
    const cJSON *alg = msg != NULL ? tp_json_get(msg, "algorithm") : NULL;
    if (cmd == NULL || !cJSON_IsString(cmd)) {
        tp_log_warn("tyk.cluster.notifications: ignoring a message that is not a Tyk "
                    "notification");
        goto out;
    }
    const char *c = cmd->valuestring;
    const char *p = payload != NULL && cJSON_IsString(payload) ? payload->valuestring : "";
    if (strcmp(c, "NoticeGatewayConfigResponse") == 0)
        goto out; /* Tyk ignores it without checking */
    const tp_conf_t *conf = &m->gen->conf;
    int trusted = conf->allow_insecure_configs;
    if (!trusted && alg != NULL && cJSON_IsNumber(alg) && alg->valuedouble == 5 && sig != NULL &&
        cJSON_IsString(sig))
        trusted = signature_ok(c, p, conf->node_secret ? conf->node_secret : "", sig->valuestring);
    if (!trusted) {
        tp_log_warn("tyk.cluster.notifications: ignoring %s: %s", c,
                    sig == NULL || !cJSON_IsString(sig) || sig->valuestring[0] == '\0'
                        ? "it is not signed"
                        : "its signature does not match node_secret");
        goto out;
    }
    for (int i = 0; reloads[i] != NULL; i++)
        if (strcmp(c, reloads[i]) == 0) {
            char why[128];
            snprintf(why, sizeof(why), "cluster notification %s", c);
            tp_master_request_reload(m, NULL, why);
            goto out;
        }
    if (strcmp(c, "KeySpaceUpdateNotification") == 0) {
        /* payload: storage hashes (or key names), comma-separated; a
         * ":suffix" is not part of the name (TYK-COMPAT 7.3) */
        int evicted = 0, names = 0;
        for (const char *k = p; *k != '\0';) {
            const char *comma = strchr(k, ',');
            size_t n = comma ? (size_t)(comma - k) : strlen(k);
            const char *colon = memchr(k, ':', n);
            size_t klen = colon ? (size_t)(colon - k) : n;
            if (klen > 0) {
                uint8_t d[32];
                tp_scache_digest(k, klen, NULL, 0, d);
                evicted += tp_scache_evict_store(m->shm->scache, d);
                names++;
            }
            k += n + (comma != NULL);
        }
        tp_log_debug("tyk.cluster.notifications: KeySpaceUpdateNotification for %d keys: %d "
                     "cached sessions evicted",
                     names, evicted);
        goto out;
    }
    if (strcmp(c, "DeleteAPICache") == 0) {
        /* payload: an api_id; its responses leave the node's front now
         * and Redis (cache-<api_id>*) as every Tyk node deletes them */
        if (p[0] == '\0' || strlen(p) >= sizeof(((purge_t *)0)->api)) {
            tp_log_warn("tyk.cluster.notifications: DeleteAPICache without a usable api_id");
            goto out;
        }
        purge_t *pg = tp_calloc(1, sizeof(*pg));
        pg->m = m;
        snprintf(pg->api, sizeof(pg->api), "%s", p);
        uint8_t d[32];
        tp_scache_digest(p, strlen(p), NULL, 0, d);
        if (m->shm->rcache != NULL)
            pg->evicted = tp_scache_evict_store(m->shm->rcache, d);
        char pattern[600];
        snprintf(pattern, sizeof(pattern), "cache-%.500s*", p);
        tp_redis_purge(m->redis, pattern, on_cache_purged, pg);
        goto out;
    }
    if (strcmp(c, "NoticeGatewayDRLNotification") != 0)
        tp_log_info("tyk.cluster.notifications: %s received (no action in this version)", c);
out:
    cJSON_Delete(msg);
}
