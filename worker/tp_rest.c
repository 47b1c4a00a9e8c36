/*
 * worker/tp_rest.c: Tyk's Gateway REST API under /tyk/: API definitions,
 * policies and reloads, with Tyk's statuses and messages (TYK-COMPAT 1).
 *
 * Every request must carry X-Tyk-Authorization equal to `secret` (compared
 * in constant time, before any routing); with no secret configured the API
 * refuses everything. Writes go to files only after the input validated,
 * through a temporary file and rename, so a rejected request changes
 * nothing on disk. Definitions and policies take effect on the next reload,
 * as in Tyk; reads answer from the generation this request started on.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "tp_ct.h"
#include "tp_err.h"
#include "tp_json.h"
#include "tp_log.h"
#include "tp_notice.h"
#include "tp_redis_purge.h"
#include "tp_shm_session.h"
#include "tp_worker.h"

enum { OP_API_CREATE = 1, OP_API_UPDATE, OP_POLICY_CREATE, OP_POLICY_UPDATE };

void tp_rest__reply(tp_req_t *req, int status, const char *json)
{
    size_t n = strlen(json);
    char *body = tp_malloc(n + 1);
    memcpy(body, json, n);
    body[n] = '\n'; /* Go's json.Encoder ends every document with one */
    tp_respond(req, status, "application/json", body, n + 1, NULL);
    free(body);
}

#define reply tp_rest__reply

static void reply_status(tp_req_t *req, int status, const char *kind, const char *message)
{
    tp_buf_t b = {0};
    tp_buf_printf(&b, "{\"status\":\"%s\",\"message\":\"", kind);
    tp_buf_json_escape(&b, message, strlen(message));
    tp_buf_puts(&b, "\"}");
    reply(req, status, tp_buf_cstr(&b));
    tp_buf_free(&b);
}

void tp_rest__error(tp_req_t *req, int status, const char *message)
{
    reply_status(req, status, "error", message);
}

#define reply_error tp_rest__error

static void reply_action(tp_req_t *req, const char *key, const char *action)
{
    tp_buf_t b = {0};
    tp_buf_puts(&b, "{\"key\":\"");
    tp_buf_json_escape(&b, key, strlen(key));
    tp_buf_printf(&b, "\",\"status\":\"ok\",\"action\":\"%s\"}", action);
    reply(req, 200, tp_buf_cstr(&b));
    tp_buf_free(&b);
}

void tp_rest__not_found(tp_req_t *req)
{
    static const char body[] = "404 page not found\n";
    tp_respond(req, 404, "text/plain; charset=utf-8", body, sizeof(body) - 1,
               "X-Content-Type-Options: nosniff\r\n");
}

void tp_rest__bad_method(tp_req_t *req)
{
    reply_error(req, 405, "Method not supported");
}

/* Equal to the secret? Time depends on the secret's length only. */
static int secret_ok(tp_str_t got, const char *want)
{
    size_t n = strlen(want);
    return n > 0 && tp_ct_equal(got.p, got.n, want, n);
}

/* A name safe as one path component: [A-Za-z0-9._~-], not "." or "..". */
static int id_ok(const char *id)
{
    return tp_policy_id_ok(id);
}

static void uuid_hex(char out[33])
{
    unsigned char b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
        for (size_t i = 0; i < sizeof(b); i++)
            b[i] = (unsigned char)rand();
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    tp_hex(out, b, 16);
}

/* Writes <text> to <path> through a new temporary file beside it and a
 * rename, so that a reader never sees half a file and nothing is left
 * behind on failure. */
static int write_file(const char *path, const char *text, char *err, size_t errlen)
{
    char tmp[4200], rnd[33];
    uuid_hex(rnd);
    snprintf(tmp, sizeof(tmp), "%s.%.12s.tmp", path, rnd); /* not *.json: never loaded */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %.900s: %s", tmp, strerror(errno));
        return -1;
    }
    size_t n = strlen(text), done = 0;
    int rc = 0;
    while (done < n && rc == 0) {
        ssize_t w = write(fd, text + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            rc = -1;
        else
            done += (size_t)w;
    }
    if (rc == 0 && fsync(fd) != 0)
        rc = -1;
    int saved = errno;
    if (close(fd) != 0 && rc == 0) {
        rc = -1;
        saved = errno;
    }
    if (rc == 0 && rename(tmp, path) != 0) {
        rc = -1;
        saved = errno;
    }
    if (rc < 0) {
        snprintf(err, errlen, "cannot write %.900s: %s", path, strerror(saved));
        unlink(tmp);
    }
    return rc;
}

static const tp_api_t *find_api(const tp_snapshot_t *snap, const char *id)
{
    for (size_t i = 0; i < snap->napis; i++)
        if (strcmp(snap->apis[i]->api_id, id) == 0)
            return snap->apis[i];
    return NULL;
}

static const tp_policy_t *find_policy(const tp_snapshot_t *snap, const char *id)
{
    for (size_t i = 0; i < snap->npolicies; i++)
        if (strcmp(snap->policies[i].id, id) == 0)
            return &snap->policies[i];
    return NULL;
}

/* ---- API definitions -------------------------------------------------------------- */

static void apis_list(tp_req_t *req)
{
    const tp_snapshot_t *snap = req->snap;
    tp_buf_t b = {0};
    tp_buf_putc(&b, '[');
    for (size_t i = 0; i < snap->napis; i++) {
        if (i > 0)
            tp_buf_putc(&b, ',');
        tp_buf_puts(&b, snap->apis[i]->def_json);
    }
    tp_buf_putc(&b, ']');
    reply(req, 200, tp_buf_cstr(&b));
    tp_buf_free(&b);
}

static const char *policy_dir(const tp_conf_t *conf)
{
    return conf->policy_path != NULL && conf->policy_path[0] != '\0' ? conf->policy_path : ".";
}

/* The file of API or policy <id>: the one it was loaded from, else
 * "<dir>/<id>.json". Returns -1 when that file holds another loaded API
 * or policy (loaded from a file not named after its id): writing or
 * deleting it would change that one. */
static int item_file(tp_req_t *req, int is_api, const char *id, char *out, size_t n)
{
    const tp_snapshot_t *snap = req->snap;
    const tp_conf_t *conf = req->conn->w->conf;
    const tp_api_t *api = is_api ? find_api(snap, id) : NULL;
    const tp_policy_t *pol = is_api ? NULL : find_policy(snap, id);
    if (api != NULL) {
        snprintf(out, n, "%s", api->file);
        return 0;
    }
    if (pol != NULL && conf->policy_path != NULL && conf->policy_path[0] != '\0') {
        snprintf(out, n, "%s", pol->file); /* from policy_path, not the record file */
        return 0;
    }
    snprintf(out, n, "%s/%s.json", is_api ? conf->app_path : policy_dir(conf), id);
    size_t count = is_api ? snap->napis : snap->npolicies;
    for (size_t i = 0; i < count; i++) {
        const char *file = is_api ? snap->apis[i]->file : snap->policies[i].file;
        const char *other = is_api ? snap->apis[i]->api_id : snap->policies[i].id;
        if (file != NULL && strcmp(file, out) == 0) {
            tp_log_warn("REST: %s holds %s \"%s\"; refusing to write or delete it for \"%s\"", out,
                        is_api ? "API" : "policy", other, id);
            return -1;
        }
    }
    return 0;
}

/* The request body as a JSON object, and its string member <key> ("" when
 * absent); NULL after answering 400 "Request malformed", as Tyk does. */
static cJSON *body_object(tp_req_t *req, const char *key, const char **id)
{
    char err[256];
    cJSON *obj =
        tp_json_parse(req->rbody.data ? req->rbody.data : "", req->rbody.len, err, sizeof(err));
    if (obj == NULL || !cJSON_IsObject(obj)) {
        cJSON_Delete(obj);
        reply_error(req, 400, "Request malformed");
        return NULL;
    }
    const cJSON *v = tp_json_get(obj, key);
    *id = v != NULL && cJSON_IsString(v) ? v->valuestring : "";
    return obj;
}

static void api_write(tp_req_t *req, int update)
{
    const tp_conf_t *conf = req->conn->w->conf;
    char err[1024];
    if (conf->use_db_app_configs) {
        reply_error(req, 500, "Due to enabled use_db_app_configs, please use the Dashboard API");
        return;
    }
    const char *id;
    cJSON *def = body_object(req, "api_id", &id);
    if (def == NULL)
        return;
    char fresh[33];
    if (update && strcmp(id, req->rest_id) != 0) {
        reply_error(req, 400,
                    "Request APIID does not match that in Definition! For Update "
                    "operations these must match.");
        goto out;
    }
    if (!update && id[0] == '\0') {
        uuid_hex(fresh);
        cJSON_DeleteItemFromObject(def, "api_id");
        cJSON_AddStringToObject(def, "api_id", fresh);
        id = fresh;
    }
    if (!id_ok(id)) {
        reply_error(req, 400, "Invalid API ID");
        goto out;
    }
    char path[4096];
    if (update && find_api(req->snap, id) == NULL) {
        reply_error(req, 404, "API not found");
        goto out;
    }
    if (item_file(req, 1, id, path, sizeof(path)) < 0) {
        reply_error(req, 400, "Invalid API ID: its file holds another API");
        goto out;
    }
    tp_api_t *api = NULL;
    if (tp_api_parse(path, def, &api, err, sizeof(err)) < 0 ||
        tp_api_js_load_ex(api, def, req->conn->w->conf, 0, err, sizeof(err)) < 0) {
        tp_api_free(api);
        api = NULL;
        char msg[1200];
        snprintf(msg, sizeof(msg), "Validation of API Definition failed. Reason: %s.", err);
        reply_error(req, 400, msg);
        goto out;
    }
    tp_api_free(api);
    tp_buf_t text = {0};
    tp_json_print_indent(&text, def); /* as Tyk writes it */
    int rc = write_file(path, tp_buf_cstr(&text), err, sizeof(err));
    tp_buf_free(&text);
    if (rc < 0) {
        tp_log_error("REST: %s", err);
        reply_error(req, 500, "File object creation failed, write error");
        goto out;
    }
    tp_log_info("REST: API %s %s (%s); it takes effect on the next reload", id,
                update ? "updated" : "added", path);
    reply_action(req, id, update ? "modified" : "added");
out:
    cJSON_Delete(def);
}

static void api_delete(tp_req_t *req, const char *id)
{
    char path[4096];
    if (!id_ok(id) || item_file(req, 1, id, path, sizeof(path)) < 0 || unlink(path) != 0) {
        reply_error(req, 500, "Delete failed");
        return;
    }
    tp_log_info("REST: API %s deleted (%s); it takes effect on the next reload", id, path);
    reply_action(req, id, "deleted");
}

/* ---- policies --------------------------------------------------------------------- */

static void policies_list(tp_req_t *req)
{
    const tp_snapshot_t *snap = req->snap;
    tp_buf_t b = {0};
    tp_buf_putc(&b, '[');
    for (size_t i = 0; i < snap->npolicies; i++) {
        if (i > 0)
            tp_buf_putc(&b, ',');
        tp_buf_puts(&b, snap->policies[i].json);
    }
    tp_buf_putc(&b, ']');
    reply(req, 200, tp_buf_cstr(&b));
    tp_buf_free(&b);
}

static int service_source(tp_req_t *req)
{
    const tp_conf_t *conf = req->conn->w->conf;
    if (conf->policy_source != NULL && strcmp(conf->policy_source, "service") == 0) {
        reply_error(req, 500, "Due to enabled service policy source, please use the Dashboard API");
        return 1;
    }
    return 0;
}

static void policy_write(tp_req_t *req, int update)
{
    const tp_conf_t *conf = req->conn->w->conf;
    char err[1024];
    if (service_source(req))
        return;
    const char *id;
    cJSON *pol = body_object(req, "id", &id);
    if (pol == NULL)
        return;
    if (update && strcmp(id, req->rest_id) != 0) {
        reply_error(req, 400,
                    "Request ID does not match that in policy! For Update operations "
                    "these must match.");
        goto out;
    }
    if (id[0] == '\0') {
        reply_error(req, 400, "Unable to create policy without id.");
        goto out;
    }
    if (!id_ok(id)) {
        reply_error(req, 400, "Invalid Policy ID: Allowed characters: a-z, A-Z, 0-9, ., _, -, ~");
        goto out;
    }
    if (tp_policy_check(pol, "$", err, sizeof(err)) < 0) {
        reply_error(req, 400, err);
        goto out;
    }
    char path[4096];
    if (item_file(req, 0, id, path, sizeof(path)) < 0) {
        reply_error(req, 400, "Invalid Policy ID: its file holds another policy");
        goto out;
    }
    tp_buf_t text = {0};
    tp_json_print_indent(&text, pol); /* as Tyk writes it */
    int rc = write_file(path, tp_buf_cstr(&text), err, sizeof(err));
    tp_buf_free(&text);
    if (rc < 0) {
        tp_log_error("REST: %s", err);
        reply_error(req, 500, "Failed to write policy");
        goto out;
    }
    if (conf->policy_path == NULL || conf->policy_path[0] == '\0')
        tp_log_warn("REST: policy %s written to %s, but without policies.policy_path the "
                    "gateway does not load policies from there",
                    id, path);
    reply_action(req, id, update ? "modified" : "added");
out:
    cJSON_Delete(pol);
}

static void policy_delete(tp_req_t *req, const char *id)
{
    char path[4096];
    if (service_source(req))
        return;
    if (!id_ok(id) || item_file(req, 0, id, path, sizeof(path)) < 0 || unlink(path) != 0) {
        reply_error(req, 500, "Delete failed");
        return;
    }
    reply_action(req, id, "deleted");
}

/* ---- reloads ------------------------------------------------------------------------ */

static void reload_local(tp_req_t *req, tp_str_t query)
{
    tp_worker_t *w = req->conn->w;
    int block = 0;
    for (const char *p = query.p, *end = query.p + query.n; p < end;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        tp_str_t kv = {p, amp ? (size_t)(amp - p) : (size_t)(end - p)};
        if (tp_str_ieq(kv, "block=true") || tp_str_ieq(kv, "block=1"))
            block = 1;
        p = kv.p + kv.n + 1;
    }
    if (!block) {
        tp_worker_tell(w, "reload 0");
        reply_status(req, 200, "ok", "");
        return;
    }
    req->token = ++w->next_token ? w->next_token : ++w->next_token;
    tp_list_insert_tail(&w->reload_waiters, &req->wait_link);
    tp_worker_tell(w, "reload %u", req->token);
}

void tp_rest_reloaded(tp_worker_t *w, uint32_t token, int ok, const char *message)
{
    tp_list_t *it, *next;
    for (it = w->reload_waiters.next; it != &w->reload_waiters; it = next) {
        next = it->next;
        tp_req_t *req = tp_container_of(it, tp_req_t, wait_link);
        if (req->token != token)
            continue;
        tp_list_remove(&req->wait_link);
        if (ok)
            reply_status(req, 200, "ok", "");
        else
            reply_error(req, 500, message[0] ? message : "reload failed");
        return;
    }
}

static void on_published(void *arg, const redisReply *rep, const char *err)
{
    (void)arg;
    if (err != NULL || rep->type == REDIS_REPLY_ERROR)
        tp_log_error("REST: cannot publish GroupReload: %s", err != NULL ? err : rep->str);
}

/* Every node (this one too) reloads on a signed GroupReload. */
static void reload_group(tp_req_t *req)
{
    tp_worker_t *w = req->conn->w;
    char *msg = tp_notice_format("GroupReload", "", w->conf->node_secret);
    if (w->redis != NULL)
        tp_redis_cmd(w->redis, on_published, NULL, "PUBLISH tyk.cluster.notifications %s", msg);
    free(msg);
    tp_log_info("REST: group reload requested");
    reply_status(req, 200, "ok", "");
}

/* ---- DELETE /tyk/cache/{api_id} (invalidateCacheHandler) ------------------------------ */

static void on_cache_purged(void *arg, long deleted, const char *err)
{
    tp_req_t *req = arg;
    req->rest_purge = NULL;
    if (err != NULL) {
        tp_log_error("REST: cache invalidation for API %s failed: %s", req->rest_id, err);
        reply_error(req, 500, "Cache invalidation failed");
        return;
    }
    tp_log_info("REST: cache invalidated for API %s (%ld responses)", req->rest_id, deleted);
    reply_status(req, 200, "ok", "cache invalidated");
}

/* Tyk deletes cache-<api_id>* (for any id, known or not). This node's
 * front drops the API's entries now, and the other nodes' on the
 * DeleteAPICache notification published here (Tyk nodes delete again). */
static void cache_purge(tp_req_t *req, tp_str_t id)
{
    tp_worker_t *w = req->conn->w;
    if (id.n == 0 || id.n >= 250 || memchr(id.p, '/', id.n) != NULL) {
        tp_rest__not_found(req);
        return;
    }
    if (req->method != HTTP_DELETE) {
        tp_rest__bad_method(req);
        return;
    }
    snprintf(req->rest_id, sizeof(req->rest_id), "%.*s", (int)id.n, id.p);
    if (w->redis == NULL) {
        reply_error(req, 500, "Cache invalidation failed");
        return;
    }
    if (w->rcache != NULL) {
        uint8_t d[32];
        tp_scache_digest(req->rest_id, strlen(req->rest_id), NULL, 0, d);
        tp_scache_evict_store(w->rcache, d);
    }
    char *msg = tp_notice_format("DeleteAPICache", req->rest_id, w->conf->node_secret);
    tp_redis_cmd(w->redis, NULL, NULL, "PUBLISH tyk.cluster.notifications %s", msg);
    free(msg);
    char pattern[300];
    snprintf(pattern, sizeof(pattern), "cache-%s*", req->rest_id);
    req->rest_purge = tp_redis_purge(w->redis, pattern, on_cache_purged, req);
}

/* ---- dispatch ------------------------------------------------------------------------ */

/* POST and PUT carry a body: remember what to do with it once it is in. */
void tp_rest__want_body(tp_req_t *req, int op, tp_str_t id)
{
    if (id.n >= sizeof(req->rest_id)) {
        reply_error(req, 400,
                    op == OP_API_UPDATE
                        ? "Invalid API ID"
                        : "Invalid Policy ID: Allowed characters: a-z, A-Z, 0-9, ., _, -, ~");
        return;
    }
    req->rest_op = (uint8_t)op;
    snprintf(req->rest_id, sizeof(req->rest_id), "%.*s", (int)id.n, id.p);
    if (req->body_done) {
        tp_rest_body_done(req);
        return;
    }
    req->buffering = 1;
    tp_conn_t *c = req->conn;
    if (req->expect_continue && req->body_seen == 0 && c->in.len == 0) {
        /* as Go's server: the client may send the body now. 25 bytes on a
         * connection with nothing else queued go out at once; if they do
         * not, the stream cannot be kept consistent, so it is closed. */
        static char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        uv_buf_t b = uv_buf_init(cont, sizeof(cont) - 1);
        if (tp_io_write(&c->io, &b, 1, NULL) != 1)
            tp_conn_close(c);
    }
}

void tp_rest_body_done(tp_req_t *req)
{
    switch (req->rest_op) {
    case OP_API_CREATE:
        api_write(req, 0);
        break;
    case OP_API_UPDATE:
        api_write(req, 1);
        break;
    case OP_POLICY_CREATE:
        policy_write(req, 0);
        break;
    case OP_POLICY_UPDATE:
        policy_write(req, 1);
        break;
    default:
        if (req->rest_op >= TP_REST_OP_KEYS)
            tp_rest_keys_body(req);
        else
            tp_rest__not_found(req);
    }
}

static int seg_is(tp_str_t s, const char *lit)
{
    size_t n = strlen(lit);
    return s.n == n && memcmp(s.p, lit, n) == 0;
}

static void api_get(tp_req_t *req, const char *id)
{
    const tp_api_t *api = find_api(req->snap, id);
    if (api == NULL)
        reply_error(req, 404, "API not found");
    else
        reply(req, 200, api->def_json);
}

static void policy_get(tp_req_t *req, const char *id)
{
    const tp_policy_t *p = find_policy(req->snap, id);
    if (p == NULL)
        reply_error(req, 404, "Policy not found");
    else
        reply(req, 200, p->json);
}

/* /tyk/<name> and /tyk/<name>/<id>: list, create, read, update, delete. */
typedef struct collection_s {
    const char *name;
    void (*list)(tp_req_t *req);
    void (*get)(tp_req_t *req, const char *id);
    void (*del)(tp_req_t *req, const char *id);
    int create_op, update_op;
} collection_t;

static const collection_t collections[] = {
    {"apis", apis_list, api_get, api_delete, OP_API_CREATE, OP_API_UPDATE},
    {"policies", policies_list, policy_get, policy_delete, OP_POLICY_CREATE, OP_POLICY_UPDATE},
};

static void collection(tp_req_t *req, const collection_t *c, tp_str_t rest)
{
    int m = req->method;
    /* Tyk OAS APIs (/tyk/apis/oas) and sub-resources are not served */
    if (memchr(rest.p, '/', rest.n) != NULL || (c->get == api_get && seg_is(rest, "oas"))) {
        tp_rest__not_found(req);
        return;
    }
    if (rest.n == 0) {
        if (m == HTTP_GET)
            c->list(req);
        else if (m == HTTP_POST)
            tp_rest__want_body(req, c->create_op, rest);
        else
            tp_rest__bad_method(req);
        return;
    }
    char id[256];
    snprintf(id, sizeof(id), "%.*s", (int)(rest.n < 255 ? rest.n : 255), rest.p);
    if (m == HTTP_GET)
        c->get(req, id);
    else if (m == HTTP_PUT)
        tp_rest__want_body(req, c->update_op, rest);
    else if (m == HTTP_DELETE)
        c->del(req, id);
    else
        tp_rest__bad_method(req);
}

void tp_rest_handle(tp_req_t *req, tp_str_t path, tp_str_t query)
{
    const tp_conf_t *conf = req->conn->w->conf;
    /* authentication comes before routing: unknown paths get 403 too */
    if (!secret_ok(tp_req_header(req, "X-Tyk-Authorization"), conf->secret ? conf->secret : "")) {
        reply_error(req, 403, "Attempted administrative access with invalid or missing key!");
        return;
    }
    while (path.n > 0 && path.p[path.n - 1] == '/')
        path.n--;
    const char *slash = memchr(path.p, '/', path.n);
    tp_str_t first = {path.p, slash ? (size_t)(slash - path.p) : path.n};
    tp_str_t rest = slash ? (tp_str_t){slash + 1, path.n - first.n - 1} : (tp_str_t){"", 0};

    if (seg_is(first, "reload") && (rest.n == 0 || seg_is(rest, "group"))) {
        if (req->method != HTTP_GET)
            tp_rest__bad_method(req);
        else if (rest.n == 0)
            reload_local(req, query);
        else
            reload_group(req);
        return;
    }
    for (size_t i = 0; i < sizeof(collections) / sizeof(collections[0]); i++)
        if (seg_is(first, collections[i].name)) {
            collection(req, &collections[i], rest);
            return;
        }
    if (seg_is(first, "keys")) {
        tp_rest_keys(req, rest, query);
        return;
    }
    if (seg_is(first, "health") && rest.n == 0) {
        tp_rest_health(req, query);
        return;
    }
    if (seg_is(first, "cache") && !seg_is(rest, "jwks") &&
        !(rest.n > 5 && strncmp(rest.p, "jwks/", 5) == 0)) {
        cache_purge(req, rest);
        return;
    }
    if (seg_is(first, "org") || seg_is(first, "oauth") || seg_is(first, "cache") ||
        seg_is(first, "certs")) {
        reply_error(req, 501, "Not implemented by this Turnpike version");
        return;
    }
    tp_rest__not_found(req);
}
