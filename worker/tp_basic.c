/*
 * worker/tp_basic.c: basic authentication (Tyk's BasicAuthKeyIsValid,
 * TYK-COMPAT 18): two stages in the auth position. "basic" reads
 * "Authorization: Basic base64(user:password)" and finds the user's
 * session (a key named generateToken(org, user), made through
 * POST /tyk/keys/<user>); "basic_check" checks the password against the
 * session's basic_auth_data by its hash_type: plain, sha256 or murmur*
 * digests on the loop, bcrypt on the thread pool (tp_crypt.c), never on
 * the loop.
 *
 * bcrypt results are remembered per worker by the stored hash, as Tyk's
 * cache does (a result is kept even when the requests that asked went
 * away; identical checks under way share one bcrypt) (unless basic_auth.disable_caching): a
 * password that matched skips bcrypt for basic_auth.cache_ttl seconds (60 by default) when the same
 * password comes again. Failures are remembered too, so a guesser cannot make the worker burn
 * bcrypt CPU on every request:
 *  - the same wrong password for the same user is refused without bcrypt
 *    for 10 s;
 *  - after any failed bcrypt for a user, other passwords for that user
 *    that are not already known good are refused without bcrypt for
 *    250 ms (at most 4 bcrypt guesses per second per user and worker; a
 *    user whose good password is cached is never refused by this).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_ct.h"
#include "tp_crypt.h"
#include "tp_err.h"
#include "tp_json.h"
#include "tp_keyhash.h"
#include "tp_log.h"
#include "tp_time.h"
#include "tp_api_mw.h"
#include "tp_worker.h"

#define CACHE_SETS 1024 /* bcrypt results per worker: sets (a power of two) ... */
#define CACHE_WAYS 4    /* ... of this many, the least recently used replaced */
#define BAD_MS 10000    /* a wrong password is remembered this long */
#define THROTTLE_MS 250 /* after a failure, no new bcrypt for that user this long */

struct tp_basic_api_s {
    tp_authloc_t loc;
    int cache;
    int64_t cache_ms;
    int extract;              /* extract_from_body: the credentials may be in the body ... */
    tp_rx_t user_rx, pass_rx; /* ... group 1 of these */
};

/* What bcrypt said about a user's stored hash. */
typedef struct bentry_s {
    char *stored; /* the bcrypt hash, NULL: empty */
    uint64_t good, bad;
    int64_t good_until, bad_until, throttle_until; /* monotonic ms */
    uint64_t used;                                 /* the cache's tick when last used */
} bentry_t;

typedef struct tp_basic_cache_s {
    uint64_t tick;
    bentry_t v[CACHE_SETS * CACHE_WAYS];
} tp_basic_cache_t;

/* A bcrypt under way for one stored hash and password digest. It belongs
 * to the worker, not to a request: a result whose requests went away
 * (timed out) is still remembered, and identical checks that come
 * meanwhile wait for it instead of starting their own. */
typedef struct bjob_s {
    tp_list_t link; /* in w->basic_jobs */
    tp_worker_t *w;
    char *stored;
    uint64_t digest;
    int cache;
    int64_t cache_ms;
    tp_list_t waiters; /* pending_t */
} bjob_t;

/* A request waiting for a bcrypt: the check stage's state points at it. */
typedef struct pending_s {
    tp_list_t link; /* in its bjob's waiters */
    tp_req_t *req;
} pending_t;

/* ---- compiling ------------------------------------------------------------------------- */

tp_basic_api_t *tp_basic_compile(const cJSON *def, const tp_api_t *api, int quiet)
{
    if (!cJSON_IsTrue(tp_json_get(def, "use_basic_auth")))
        return NULL;
    tp_basic_api_t *b = tp_calloc(1, sizeof(*b));
    tp_authloc_read(def, "basic", &b->loc);
    const cJSON *o = tp_json_get(def, "basic_auth");
    b->cache = !cJSON_IsTrue(tp_json_get(o, "disable_caching"));
    const cJSON *ttl = tp_json_get(o, "cache_ttl");
    b->cache_ms =
        (cJSON_IsNumber(ttl) && ttl->valuedouble > 0 ? (int64_t)ttl->valuedouble : 60) * 1000;
    if (cJSON_IsTrue(tp_json_get(o, "extract_from_body"))) {
        const cJSON *ur = tp_json_get(o, "body_user_regexp"),
                    *pr = tp_json_get(o, "body_password_regexp");
        char why[256] = "an empty regular expression";
        int ok = cJSON_IsString(ur) && cJSON_IsString(pr) && ur->valuestring[0] != '\0' &&
                 pr->valuestring[0] != '\0';
        if (ok && tp_rx_compile(&b->user_rx, ur->valuestring, 0, why, sizeof(why)) < 0)
            ok = 0;
        else if (ok && tp_rx_compile(&b->pass_rx, pr->valuestring, 0, why, sizeof(why)) < 0) {
            regfree(&b->user_rx.re);
            ok = 0;
        }
        if (ok)
            b->extract = 1;
        else if (!quiet)
            tp_log_error("API %s (%s): $.basic_auth: extract_from_body with %s: credentials are "
                         "read from the %s header only",
                         api->api_id, api->file, why, b->loc.header);
    }
    return b;
}

void tp_basic_api_free(tp_basic_api_t *b)
{
    if (b == NULL)
        return;
    tp_authloc_free(&b->loc);
    if (b->extract) {
        regfree(&b->user_rx.re);
        regfree(&b->pass_rx.re);
    }
    free(b);
}

/* ---- the request's credentials --------------------------------------------------------- */

static const tp_basic_api_t *basic_of(const tp_req_t *req)
{
    const tp_compiled_t *c = tp_compiled(req->conn->w, req);
    return c != NULL ? c->basic : NULL;
}

static void refuse(tp_req_t *req, int status, const char *msg)
{
    if (!req->quiet_refusal)
        tp_respond_auth_failure(req, status, msg);
}

int tp_basic_extracts(const tp_basic_api_t *b)
{
    return b != NULL && b->extract;
}

/* extract_from_body: group 1 of the first match of <rx> in the body into
 * <out> (<cap> bytes, NUL-terminated); -1 with Tyk's answer. */
static int body_field(tp_req_t *req, const tp_rx_t *rx, const char *what, char *out, size_t cap)
{
    char msg[64];
    regmatch_t g[TP_RW_GROUPS];
    const char *body = tp_buf_cstr(&req->rbody);
    if (!tp_rx_exec(rx, body, g)) {
        snprintf(msg, sizeof(msg), "Body do not contain %s", what);
        refuse(req, 400, msg);
        return -1;
    }
    if (rx->ngroups < 2 || g[1].rm_so < 0) {
        snprintf(msg, sizeof(msg), "%s should be inside regexp match group", what);
        refuse(req, 400, msg);
        return -1;
    }
    size_t n = (size_t)(g[1].rm_eo - g[1].rm_so);
    if (n >= cap)
        n = cap - 1;
    memcpy(out, body + g[1].rm_so, n);
    out[n] = '\0';
    return 0;
}

/* The credentials from the body, after the header had none in good form. */
static int body_credentials(tp_req_t *req, const tp_basic_api_t *b, char *buf, size_t cap,
                            const char **user, const char **pass)
{
    size_t half = cap / 2;
    if (body_field(req, &b->user_rx, "username", buf, half) < 0 ||
        body_field(req, &b->pass_rx, "password", buf + half, cap - half) < 0)
        return -1;
    *user = buf;
    *pass = buf + half;
    return 0;
}

/* The user and password of the header, split into <buf> (NUL-separated),
 * or -1 with the request answered as Tyk answers it. */
static int header_credentials(tp_req_t *req, const tp_basic_api_t *b, char *buf, size_t cap,
                              const char **user, const char **pass);

static int credentials(tp_req_t *req, const tp_basic_api_t *b, char *buf, size_t cap,
                       const char **user, const char **pass)
{
    if (!b->extract)
        return header_credentials(req, b, buf, cap, user, pass);
    /* any header error sends Tyk to the body, with no answer yet */
    req->quiet_refusal = 1;
    int rc = header_credentials(req, b, buf, cap, user, pass);
    req->quiet_refusal = 0;
    return rc == 0 ? 0 : body_credentials(req, b, buf, cap, user, pass);
}

static int header_credentials(tp_req_t *req, const tp_basic_api_t *b, char *buf, size_t cap,
                              const char **user, const char **pass)
{
    tp_str_t v = tp_req_header(req, b->loc.header);
    if (v.n == 0) {
        if (req->quiet_refusal)
            return -1;
        tp_respond_auth_error(req, TP_AUTH_BASIC_MISSING);
        return -1;
    }
    /* strings.Split(value, " "): exactly two parts */
    const char *sp = memchr(v.p, ' ', v.n);
    if (sp == NULL || memchr(sp + 1, ' ', (size_t)(v.p + v.n - sp - 1)) != NULL) {
        refuse(req, 400, "Attempted access with malformed header, header not in basic auth format");
        return -1;
    }
    size_t enc = (size_t)(v.p + v.n - sp - 1);
    ptrdiff_t n =
        enc / 4 * 3 + 3 <= cap ? tp_b64_std_decode(sp + 1, enc, (unsigned char *)buf) : -1;
    if (n < 0) {
        refuse(req, 400, "Attempted access with malformed header, auth data not encoded correctly");
        return -1;
    }
    buf[n] = '\0';
    char *colon = memchr(buf, ':', (size_t)n);
    if (colon == NULL || memchr(colon + 1, ':', (size_t)(buf + n - colon - 1)) != NULL ||
        strlen(buf) != (size_t)n) {
        refuse(req, 400, "Attempted access with malformed header, values not in basic auth format");
        return -1;
    }
    *colon = '\0';
    *user = buf;
    *pass = colon + 1;
    return 0;
}

/* ---- bcrypt results -------------------------------------------------------------------- */

static uint64_t digest(const char *s)
{
    uint64_t h[2];
    tp_murmur3_128(s, strlen(s), 0, h);
    return h[0];
}

static bentry_t *bentry(tp_worker_t *w, const char *stored, int make)
{
    if (w->basic_cache == NULL) {
        if (!make)
            return NULL;
        w->basic_cache = tp_calloc(1, sizeof(*w->basic_cache));
    }
    tp_basic_cache_t *c = w->basic_cache;
    bentry_t *set = &c->v[(digest(stored) & (CACHE_SETS - 1)) * CACHE_WAYS], *old = set;
    for (int i = 0; i < CACHE_WAYS; i++) {
        if (set[i].stored != NULL && strcmp(set[i].stored, stored) == 0) {
            set[i].used = ++c->tick;
            return &set[i];
        }
        if (set[i].stored == NULL || (old->stored != NULL && set[i].used < old->used))
            old = &set[i];
    }
    if (!make)
        return NULL;
    free(old->stored); /* an empty place, else the set's least recently used */
    memset(old, 0, sizeof(*old));
    old->stored = tp_strdup(stored);
    old->used = ++c->tick;
    return old;
}

static void bcrypt_done(void *arg, int ok, const char *out)
{
    (void)out;
    bjob_t *j = arg;
    tp_worker_t *w = j->w;
    int64_t now = tp_time_mono_ms();
    bentry_t *e = bentry(w, j->stored, 1);
    if (ok && j->cache) {
        e->good = j->digest;
        e->good_until = now + j->cache_ms;
    } else if (!ok) {
        e->bad = j->digest;
        e->bad_until = now + BAD_MS;
        e->throttle_until = now + THROTTLE_MS;
    }
    tp_list_remove(&j->link);
    while (!tp_list_empty(&j->waiters)) {
        pending_t *p = tp_container_of(j->waiters.next, pending_t, link);
        tp_list_remove(&p->link);
        if (ok)
            tp_chain_resume(p->req, TP_STAGE_NEXT);
        else
            tp_respond_auth_error(p->req, TP_AUTH_BASIC_UNAUTHORISED);
    }
    free(j->stored);
    free(j);
}

/* Queues <req> behind the bcrypt of <stored> and <pass>, started unless
 * one for the same pair runs. 0, or -1 when none could be started. */
static int bcrypt_wait(tp_req_t *req, const tp_basic_api_t *b, const char *stored, const char *pass,
                       uint64_t d)
{
    tp_worker_t *w = req->conn->w;
    if (w->basic_jobs.next == NULL)
        tp_list_init(&w->basic_jobs);
    bjob_t *j = NULL;
    for (tp_list_t *l = w->basic_jobs.next; l != &w->basic_jobs && j == NULL; l = l->next) {
        bjob_t *c = tp_container_of(l, bjob_t, link);
        if (c->digest == d && strcmp(c->stored, stored) == 0)
            j = c;
    }
    if (j == NULL) {
        j = tp_calloc(1, sizeof(*j));
        j->w = w;
        j->stored = tp_strdup(stored);
        j->digest = d;
        j->cache = b->cache;
        j->cache_ms = b->cache_ms;
        tp_list_init(&j->waiters);
        if (tp_crypt_check(&w->loop, stored, pass, bcrypt_done, j) == NULL) {
            free(j->stored);
            free(j);
            return -1;
        }
        tp_list_insert_tail(&w->basic_jobs, &j->link);
    }
    pending_t **pp = tp_chain_state(req);
    pending_t *p = *pp = tp_req_alloc(req, sizeof(*p));
    p->req = req;
    tp_list_insert_tail(&j->waiters, &p->link);
    tp_req_save(req, req->rp); /* the head must outlive the read buffer */
    return 0;
}

/* ---- the stages ------------------------------------------------------------------------ */

static tp_stage_rc_t basic_run(tp_req_t *req)
{
    const tp_basic_api_t *b = basic_of(req);
    if (req->ignored)
        return TP_STAGE_NEXT;
    if (b == NULL)
        return TP_STAGE_ERROR;
    char buf[1024];
    const char *user, *pass;
    tp_session_method(req, TP_ID_BASIC);
    if (credentials(req, b, buf, sizeof(buf), &user, &pass) < 0)
        return TP_STAGE_DONE;
    tp_stage_rc_t rc =
        tp_session_lookup_as(req, (tp_str_t){user, strlen(user)}, TP_AUTH_BASIC_UNAUTHORISED, NULL);
    explicit_bzero(buf, sizeof(buf));
    return rc;
}

static tp_stage_rc_t check_run(tp_req_t *req)
{
    const tp_basic_api_t *b = basic_of(req);
    tp_sess_t *sess = tp_session_current(req);
    if (req->ignored || b == NULL || sess == NULL)
        return TP_STAGE_NEXT;
    char buf[1024];
    const char *user, *pass;
    if (credentials(req, b, buf, sizeof(buf), &user, &pass) < 0)
        return TP_STAGE_DONE;
    const cJSON *ba = tp_json_get(tp_session_json(sess), "basic_auth_data");
    const cJSON *pw = tp_json_get(ba, "password"), *ht = tp_json_get(ba, "hash_type");
    const char *stored = cJSON_IsString(pw) ? pw->valuestring : "";
    const char *type = cJSON_IsString(ht) ? ht->valuestring : "";
    tp_stage_rc_t rc = TP_STAGE_NEXT;
    int ok = -1; /* -1: bcrypt decides */
    if (type[0] == '\0') {
        ok = tp_ct_equal(pass, strlen(pass), stored, strlen(stored));
    } else if (strcmp(type, "sha256") == 0 || strcmp(type, "murmur32") == 0 ||
               strcmp(type, "murmur64") == 0 || strcmp(type, "murmur128") == 0) {
        char hex[TP_KEYHASH_HEX_MAX];
        size_t n = tp_keyhash_hex(type, pass, strlen(pass), hex);
        ok = tp_ct_equal(hex, n, stored, strlen(stored));
    }
    if (ok < 0) {
        int64_t now = tp_time_mono_ms();
        uint64_t d = digest(pass);
        bentry_t *e = bentry(req->conn->w, stored, 0);
        if (e != NULL && e->good == d && now < e->good_until)
            ok = 1;
        else if (e != NULL && ((e->bad == d && now < e->bad_until) || now < e->throttle_until))
            ok = 0;
        if (ok < 0)
            rc = bcrypt_wait(req, b, stored, pass, d) == 0 ? TP_STAGE_LATER : TP_STAGE_ERROR;
    }
    if (ok == 0) {
        tp_respond_auth_error(req, TP_AUTH_BASIC_UNAUTHORISED);
        rc = TP_STAGE_DONE;
    }
    explicit_bzero(buf, sizeof(buf));
    return rc;
}

static void check_cancel(tp_req_t *req)
{
    pending_t **pp = tp_chain_state_peek(req);
    if (pp != NULL && *pp != NULL) {
        if (tp_list_linked(&(*pp)->link)) /* the bcrypt goes on, for the cache */
            tp_list_remove(&(*pp)->link);
        *pp = NULL;
    }
}

static int basic_wanted(const tp_chain_api_t *a)
{
    return !a->keyless && a->basic;
}

const tp_stage_t tp_stage_basic = {.name = "basic",
                                   .wanted = basic_wanted,
                                   .run = basic_run,
                                   .cancel = tp_session_cancel,
                                   .state = sizeof(void *)}; /* the session lookup (tp_session.c) */

const tp_stage_t tp_stage_basic_check = {.name = "basic_check",
                                         .wanted = basic_wanted,
                                         .run = check_run,
                                         .cancel = check_cancel,
                                         .state = sizeof(void *)}; /* the bcrypt under way */
