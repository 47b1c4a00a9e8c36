/* test/unit/test_shm.c: shared-memory generations (publish, slot reuse,
 * space), the shared session cache, and the small pieces of the control plane: the string map, the
 * JSON printer the REST API writes with, cluster-notification signatures. */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tp_buf.h"
#include "tp_json.h"
#include "tp_notice.h"
#include "tp_shm.h"
#include "tp_shm_breaker.h"
#include "tp_shm_hosts.h"
#include "tp_shm_limit.h"
#include "tp_shm_session.h"
#include "tp_strmap.h"
#include "tp_test.h"
#include "tp_time.h"

/* <n> keyless APIs "api<i>" on "/p<i>/", each to its own upstream host. */
static void make_apis(tp_apis_t *apis, size_t n)
{
    memset(apis, 0, sizeof(*apis));
    apis->v = calloc(n ? n : 1, sizeof(*apis->v));
    for (size_t i = 0; i < n; i++) {
        char text[512], err[256];
        snprintf(text, sizeof(text),
                 "{\"api_id\": \"api%zu\", \"name\": \"API %zu\", \"use_keyless\": true, "
                 "\"proxy\": {\"listen_path\": \"/p%zu/\", \"target_url\": \"http://h%zu:80/\"}}",
                 i, i, i, i);
        cJSON *def = tp_json_parse(text, strlen(text), err, sizeof(err));
        if (tp_api_parse("mem.json", def, &apis->v[apis->n], err, sizeof(err)) == 0)
            apis->n++;
        cJSON_Delete(def);
    }
}

static int publish(tp_shm_t *shm, size_t napis, uint64_t gen, char *err, size_t errlen)
{
    tp_apis_t apis;
    tp_router_t router;
    tp_policies_t pols = {0};
    tp_conf_t conf;
    memset(&conf, 0, sizeof(conf));
    make_apis(&apis, napis);
    tp_router_build(&router, &apis, &conf);
    int rc = tp_shm_publish(shm, &apis, &router, &pols, gen, err, errlen);
    /* the generation must not depend on the heap copies */
    tp_router_free(&router);
    tp_apis_free(&apis);
    return rc;
}

static void unmap(tp_shm_t *shm)
{
    munmap(shm, shm->size);
}

TP_TEST(shm_publish_and_read)
{
    char err[512];
    tp_shm_t *shm = tp_shm_create(8 << 20, 64, err, sizeof(err));
    CHECK(shm != NULL);
    CHECK(tp_shm_current(shm) == NULL);
    CHECK_INT(publish(shm, 3, 1, err, sizeof(err)), 0);
    const tp_snapshot_t *snap = tp_shm_current(shm);
    CHECK(snap != NULL);
    CHECK_INT(snap->generation, 1);
    CHECK_INT(atomic_load(&shm->generation), 1);
    CHECK_INT(snap->napis, 3);
    CHECK_INT(snap->ntargets, 3);
    CHECK_STR(snap->apis[2]->api_id, "api2");
    CHECK((char *)snap->apis[2]->api_id > (char *)shm &&
          (char *)snap->apis[2]->api_id < (char *)shm + shm->size);
    size_t matched = 0;
    const tp_route_t *r =
        tp_router_match(&snap->router, (tp_str_t){"x", 1}, (tp_str_t){"/p1/abc", 7}, &matched);
    CHECK(r != NULL);
    CHECK_STR(r->api->api_id, "api1");
    CHECK(r->api == snap->apis[1]);
    CHECK_INT(matched, 4);
    CHECK_STR(snap->apis[1]->targets[0].url.host, "h1");
    /* counter rows are stable per api_id */
    CHECK_INT(snap->apis[0]->stat_idx, tp_shm_stat_index("api0"));
    CHECK(tp_shm_stat_index("api0") != tp_shm_stat_index("api1"));
    unmap(shm);
}

TP_TEST(shm_slots_wait_for_old_readers)
{
    char err[512];
    tp_shm_t *shm = tp_shm_create(8 << 20, 64, err, sizeof(err));
    CHECK(shm != NULL);
    /* a live worker still running a request on generation 1 */
    tp_shm_worker_t *w = &shm->workers[0];
    atomic_store(&w->pid, (int32_t)getpid());
    atomic_store(&w->serving, 1);
    atomic_store(&w->oldest, 1);
    for (uint64_t g = 1; g <= TP_SHM_SLOTS; g++)
        CHECK_INT(publish(shm, 2, g, err, sizeof(err)), 0);
    /* every slot holds a generation the worker may read */
    CHECK_INT(publish(shm, 2, TP_SHM_SLOTS + 1, err, sizeof(err)), -EBUSY);
    CHECK_CONTAINS(err, "in-flight");
    CHECK_INT(tp_shm_current(shm)->generation, TP_SHM_SLOTS);
    /* the request finished and the worker moved on: the old slots free up */
    atomic_store(&w->serving, TP_SHM_SLOTS);
    atomic_store(&w->oldest, TP_SHM_SLOTS);
    for (uint64_t g = TP_SHM_SLOTS + 1; g <= 3 * TP_SHM_SLOTS; g++) {
        CHECK_INT(publish(shm, 2, g, err, sizeof(err)), 0);
        atomic_store(&w->serving, g);
        atomic_store(&w->oldest, g);
    }
    CHECK_INT(tp_shm_current(shm)->generation, 3 * TP_SHM_SLOTS);
    /* a row whose worker is gone does not hold slots */
    atomic_store(&w->oldest, 1);
    atomic_store(&w->pid, 0);
    CHECK_INT(publish(shm, 2, 3 * TP_SHM_SLOTS + 1, err, sizeof(err)), 0);
    unmap(shm);
}

/* One request running for ever on generation 1 pins its slot only. */
TP_TEST(shm_long_request_pins_one_slot)
{
    char err[512];
    tp_shm_t *shm = tp_shm_create(8 << 20, 64, err, sizeof(err));
    CHECK(shm != NULL);
    CHECK_INT(publish(shm, 2, 1, err, sizeof(err)), 0);
    const tp_snapshot_t *first = tp_shm_current(shm);
    tp_shm_worker_t *w = &shm->workers[3];
    atomic_store(&w->pid, (int32_t)getpid());
    for (uint64_t g = 2; g <= 10 * TP_SHM_SLOTS; g++) {
        /* the worker follows each generation but keeps a request on the first */
        atomic_store(&w->serving, g - 1);
        atomic_store(&w->slots, (1u << first->slot) | (1u << tp_shm_current(shm)->slot));
        CHECK_INT(publish(shm, 2, g, err, sizeof(err)), 0);
        CHECK(tp_shm_current(shm)->slot != first->slot);
    }
    /* the first generation is intact */
    CHECK_INT(first->generation, 1);
    CHECK_STR(first->apis[1]->api_id, "api1");
    CHECK(tp_shm_slot_free(shm));
    unmap(shm);
}

TP_TEST(shm_too_small_keeps_the_old_generation)
{
    char err[512];
    tp_shm_t *shm = tp_shm_create(TP_SHM_SLOTS * 16384, 64, err, sizeof(err));
    CHECK(shm != NULL);
    CHECK_INT(publish(shm, 2, 1, err, sizeof(err)), 0);
    CHECK_INT(publish(shm, 500, 2, err, sizeof(err)), -ENOSPC);
    CHECK_CONTAINS(err, "raise turnpike.shm_size");
    CHECK_INT(tp_shm_current(shm)->generation, 1);
    CHECK_INT(tp_shm_current(shm)->napis, 2);
    CHECK_INT(publish(shm, 3, 2, err, sizeof(err)), 0);
    unmap(shm);
}

static void ids(const char *key, const char *hash, uint8_t id[32], uint8_t store[32])
{
    tp_scache_digest("default", 7, key, strlen(key), id);
    tp_scache_digest(hash, strlen(hash), NULL, 0, store);
}

TP_TEST(scache_put_get_refresh_evict)
{
    char err[256];
    tp_scache_t *c = tp_scache_create(64 * 1024, 1024, "session", err, sizeof(err));
    CHECK(c != NULL);
    uint8_t id[32], store[32];
    ids("k1", "h1", id, store);
    tp_buf_t rkey = {0}, json = {0};
    uint32_t slot;
    uint64_t v1, v2;
    int64_t now = tp_time_mono_ms();
    CHECK(!tp_scache_get(c, id, now, &rkey, &json, &slot, &v1));
    CHECK_INT(
        tp_scache_put(c, tp_scache_epoch(c), id, store, "apikey-h1", "{\"a\":1}", 7, now + 1000),
        0);
    CHECK(tp_scache_get(c, id, now, &rkey, &json, &slot, &v1));
    CHECK_STR(rkey.data, "apikey-h1");
    CHECK_STR(json.data, "{\"a\":1}");
    CHECK(tp_scache_left(c, slot, v1, now) == 1000);
    CHECK(tp_scache_left(c, slot, v1, now + 1000) == 0); /* expired */

    /* a refresh with the same session moves the expiry, not the version */
    CHECK_INT(
        tp_scache_put(c, tp_scache_epoch(c), id, store, "apikey-h1", "{\"a\":1}", 7, now + 5000),
        0);
    CHECK(tp_scache_left(c, slot, v1, now) == 5000);
    /* a changed session is a new version: parsed copies are out of date */
    CHECK_INT(
        tp_scache_put(c, tp_scache_epoch(c), id, store, "apikey-h1", "{\"a\":2}", 7, now + 5000),
        0);
    CHECK(tp_scache_left(c, slot, v1, now) == 0);
    CHECK(tp_scache_get(c, id, now, &rkey, &json, &slot, &v2));
    CHECK(v2 != v1);
    CHECK_STR(json.data, "{\"a\":2}");

    /* a read that began before an eviction is not cached */
    uint64_t epoch = tp_scache_epoch(c);
    uint8_t id2[32], store2[32];
    ids("k2", "h2", id2, store2);
    CHECK_INT(tp_scache_evict_store(c, store2), 0);
    CHECK_INT(tp_scache_put(c, epoch, id2, store2, "apikey-h2", "{}", 2, now + 1000), -1);
    CHECK(!tp_scache_get(c, id2, now, &rkey, &json, &slot, &v2));

    /* eviction by storage hash, seen by another process */
    pid_t pid = fork();
    if (pid == 0)
        _exit(tp_scache_evict_store(c, store) == 1 ? 0 : 1);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(!tp_scache_get(c, id, now, &rkey, &json, &slot, &v2));
    size_t used, cap;
    tp_scache_stats(c, now, &used, &cap);
    CHECK_INT(used, 0);
    CHECK(cap == 64);
    tp_buf_free(&rkey);
    tp_buf_free(&json);
}

TP_TEST(limits_gcra_burst_then_steady)
{
    char err[256];
    tp_limits_t *t = tp_limits_create(64, err, sizeof(err));
    CHECK(t != NULL);
    const char *k = "rate-limit-abc";
    int64_t now = 1000000000000LL, sec = 1000000000LL;
    tp_limit_res_t r;
    /* 5 per second: a burst of 5, remaining counting down */
    for (int i = 0; i < 5; i++) {
        CHECK_INT(tp_limits_take(t, k, strlen(k), 5, sec, now, &r), 1);
        CHECK_INT(r.remaining, 4 - i);
    }
    CHECK_INT(tp_limits_take(t, k, strlen(k), 5, sec, now, &r), 0);
    CHECK_INT(r.remaining, 0);
    CHECK_INT(r.reset_us, 200000); /* the next one in 1/5 s */
    /* refused requests cost nothing: still one at +200 ms, not later */
    for (int i = 0; i < 50; i++)
        CHECK_INT(tp_limits_take(t, k, strlen(k), 5, sec, now + sec / 10, &r), 0);
    CHECK_INT(tp_limits_take(t, k, strlen(k), 5, sec, now + sec / 5, &r), 1);
    CHECK_INT(tp_limits_take(t, k, strlen(k), 5, sec, now + sec / 5, &r), 0);
    /* idle for a window: the whole burst again */
    for (int i = 0; i < 5; i++)
        CHECK_INT(tp_limits_take(t, k, strlen(k), 5, sec, now + 3 * sec, &r), 1);
    CHECK_INT(tp_limits_take(t, k, strlen(k), 5, sec, now + 3 * sec, &r), 0);
    /* another key is counted apart */
    CHECK_INT(tp_limits_take(t, "rate-limit-x", 12, 5, sec, now, &r), 1);
    tp_buf_t out = {0};
    CHECK_INT(tp_limits_show(t, "abc", now + 3 * sec, &out), 1);
    CHECK_CONTAINS(tp_buf_cstr(&out), "rate-limit-abc local limit=5 remaining=0");
    tp_buf_free(&out);
    CHECK_INT(tp_limits_nodes(t), 1);
    tp_limits_set_nodes(t, 3);
    CHECK_INT(tp_limits_nodes(t), 3);
}

TP_TEST(limits_processes_share_exactly_and_the_table_recycles)
{
    char err[256];
    tp_limits_t *t = tp_limits_create(64, err, sizeof(err));
    CHECK(t != NULL);
    const char *k = "rate-limit-shared";
    int64_t now = 5000000000000LL, hour = 3600000000000LL;
    pid_t pids[4];
    for (int p = 0; p < 4; p++) {
        pids[p] = fork();
        if (pids[p] == 0) {
            tp_limit_res_t r;
            int got = 0;
            for (int i = 0; i < 2000; i++)
                got += tp_limits_take(t, k, strlen(k), 100, hour, now, &r);
            _exit(got);
        }
    }
    int total = 0;
    for (int p = 0; p < 4; p++) {
        int status;
        CHECK(waitpid(pids[p], &status, 0) == pids[p] && WIFEXITED(status));
        total += WEXITSTATUS(status);
    }
    CHECK_INT(total, 100); /* exactly the limit, however the processes interleave */
    /* far more keys than entries: the table reuses idle entries, keys still work */
    tp_limit_res_t r;
    char key[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "rate-limit-k%d", i);
        CHECK_INT(tp_limits_take(t, key, strlen(key), 1, hour, now + i, &r), 1);
        CHECK_INT(tp_limits_take(t, key, strlen(key), 1, hour, now + i, &r), 0);
    }
    /* a Redis answer noted for operators */
    tp_limits_note(t, "quota-zz", 8, TP_LIM_QUOTA, 10, 4, 6, 2000000, now);
    tp_buf_t out = {0};
    CHECK_INT(tp_limits_show(t, "zz", now, &out), 1);
    CHECK_CONTAINS(tp_buf_cstr(&out), "quota-zz quota limit=10 remaining=6 reset=2.000 count=4");
    tp_buf_free(&out);
}

TP_TEST(limits_quota_lease)
{
    char err[256];
    tp_limits_t *t = tp_limits_create(64, err, sizeof(err));
    CHECK(t != NULL);
    const char *k = "quota-lease1";
    int64_t now = 7000000000000LL, sec = 1000000000LL;
    tp_limit_res_t r;
    CHECK_INT(tp_limits_lease_take(t, k, strlen(k), 100, now, &r), 0); /* nothing leased */
    /* the counter is at 10 after a lease of 5: this request took one, 4 are kept */
    tp_limits_lease_add(t, k, strlen(k), 100, 4, 10, now + 60 * sec, now);
    for (int i = 0; i < 4; i++) {
        CHECK_INT(tp_limits_lease_take(t, k, strlen(k), 100, now, &r), 1);
        CHECK_INT(r.remaining, 90 + 3 - i);
        CHECK_INT(r.reset_us, 60000000);
    }
    CHECK_INT(tp_limits_lease_take(t, k, strlen(k), 100, now, &r), 0);
    /* a lease does not outlive its window */
    tp_limits_lease_add(t, k, strlen(k), 100, 3, 15, now + 60 * sec, now);
    CHECK_INT(tp_limits_lease_take(t, k, strlen(k), 100, now + 61 * sec, &r), 0);
    /* the next window starts empty: the old window's lease is gone */
    tp_limits_lease_add(t, k, strlen(k), 100, 1, 2, now + 120 * sec, now + 61 * sec);
    CHECK_INT(tp_limits_lease_take(t, k, strlen(k), 100, now + 61 * sec, &r), 1);
    CHECK_INT(tp_limits_lease_take(t, k, strlen(k), 100, now + 61 * sec, &r), 0);
    tp_buf_t out = {0};
    CHECK_INT(tp_limits_show(t, "lease1", now + 61 * sec, &out), 1);
    CHECK_CONTAINS(tp_buf_cstr(&out), "quota-lease1 quota-lease limit=100 remaining=98");
    tp_buf_free(&out);
}

TP_TEST(strmap_put_get_grow)
{
    tp_strmap_t m = {0};
    CHECK(tp_strmap_get(&m, "a") == NULL);
    char key[32];
    for (uint32_t i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "key-%u", i);
        int added = 0;
        CHECK_INT(*tp_strmap_put(&m, key, i, &added), i);
        CHECK_INT(added, 1);
    }
    CHECK_INT(m.n, 5000);
    CHECK(m.cap >= 10000);
    for (uint32_t i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "key-%u", i);
        uint32_t *v = tp_strmap_get(&m, key);
        CHECK(v != NULL);
        CHECK_INT(*v, i);
        int added = 1;
        CHECK_INT(*tp_strmap_put(&m, key, 99999, &added), i); /* kept, not replaced */
        CHECK_INT(added, 0);
    }
    CHECK(tp_strmap_get(&m, "key-5000") == NULL);
    CHECK(tp_strmap_get(&m, "") == NULL);
    tp_strmap_put(&m, "", 7, NULL);
    CHECK_INT(*tp_strmap_get(&m, ""), 7);
    tp_strmap_free(&m);
    CHECK_INT(m.n, 0);
}

TP_TEST(json_print_indent_like_go)
{
    const char *in = "{\"a\":1,\"b\":[true,false,null,-2.5,\"x\\\"y\\n\"],\"c\":{},\"d\":[],"
                     "\"e\":{\"f\":{\"g\":12345678901}},\"h\":0.1}";
    char err[256];
    cJSON *root = tp_json_parse(in, strlen(in), err, sizeof(err));
    CHECK(root != NULL);
    tp_buf_t b = {0};
    tp_json_print_indent(&b, root);
    cJSON_Delete(root);
    const char *want = "{\n"
                       "  \"a\": 1,\n"
                       "  \"b\": [\n"
                       "    true,\n"
                       "    false,\n"
                       "    null,\n"
                       "    -2.5,\n"
                       "    \"x\\\"y\\n\"\n"
                       "  ],\n"
                       "  \"c\": {},\n"
                       "  \"d\": [],\n"
                       "  \"e\": {\n"
                       "    \"f\": {\n"
                       "      \"g\": 12345678901\n"
                       "    }\n"
                       "  },\n"
                       "  \"h\": 0.1\n"
                       "}";
    int same = strcmp(tp_buf_cstr(&b), want) == 0;
    if (!same)
        fprintf(stderr, "got:\n%s\n", tp_buf_cstr(&b));
    tp_buf_free(&b);
    CHECK(same);
}

/* The expected values are hashlib.sha256(command + payload + secret). */
TP_TEST(notice_signature_and_format)
{
    char hex[65];
    tp_notice_signature("GroupReload", "", "n0de-s3cret", hex);
    CHECK_STR(hex, "b98c9667d8f6dc931bc915c612d3b0cac329354891ef9237d524c01d9f0ea277");
    tp_notice_signature("ApiUpdated", "a\"b", NULL, hex);
    CHECK_STR(hex, "2af1dfa72804cc9f9f4ad4d2c84ea3c637e94bade19e6ed2ba991b8e4f9e704a");
    char *msg = tp_notice_format("ApiUpdated", "a\"b", NULL);
    char want[256];
    snprintf(want, sizeof(want),
             "{\"command\":\"ApiUpdated\",\"payload\":\"a\\\"b\",\"signature\":\"%s\","
             "\"algorithm\":5}",
             hex);
    int same = strcmp(msg, want) == 0;
    free(msg);
    CHECK(same);
}

TP_TEST(breaker_trips_half_opens_and_resets)
{
    char err[256];
    tp_breakers_t *t = tp_breakers_create(16, err, sizeof(err));
    CHECK(t != NULL);
    tp_breaker_t *b = tp_breaker_get(t, "api\0GET\0/x", 10, "api GET /x");
    CHECK(b != NULL);
    CHECK(tp_breaker_get(t, "api\0GET\0/x", 10, "again") == b);
    CHECK(tp_breaker_get(t, "api\0GET\0/y", 10, "other") != b);
    tp_breaker_conf_t c = {.threshold = 0.5, .samples = 4, .return_ms = 5000, .half_open = 1};
    int64_t now = 1000000;
    uint32_t f, n;
    int ev;
    /* old results leave the 10 s window: three failures 11 s ago do not count */
    for (int i = 0; i < 3; i++)
        CHECK_INT(tp_breaker_record(b, &c, 1, 0, now - 11000, &f, &n), TP_BREAKER_SAME);
    CHECK_INT(tp_breaker_record(b, &c, 0, 0, now, &f, &n), TP_BREAKER_SAME);
    CHECK_INT(tp_breaker_record(b, &c, 1, 0, now, &f, &n), TP_BREAKER_SAME);
    CHECK_INT(n, 2);
    CHECK_INT(tp_breaker_record(b, &c, 0, 0, now + 1000, &f, &n), TP_BREAKER_SAME);
    /* 2 of 4 failed: at the threshold, it trips */
    CHECK_INT(tp_breaker_record(b, &c, 1, 0, now + 2000, &f, &n), TP_BREAKER_TRIPPED);
    CHECK_INT(f, 2);
    CHECK_INT(n, 4);
    now += 2000;
    CHECK_INT(tp_breaker_allow(b, &c, now + 100, &ev), TP_BREAKER_REFUSE);
    /* one trial after 500 ms, the others still refused */
    CHECK_INT(tp_breaker_allow(b, &c, now + 600, &ev), TP_BREAKER_TRIAL);
    CHECK_INT(tp_breaker_allow(b, &c, now + 601, &ev), TP_BREAKER_REFUSE);
    /* it fails: the next waits 1 s */
    CHECK_INT(tp_breaker_record(b, &c, 1, 1, now + 700, &f, &n), TP_BREAKER_SAME);
    CHECK_INT(tp_breaker_allow(b, &c, now + 1500, &ev), TP_BREAKER_REFUSE);
    CHECK_INT(tp_breaker_allow(b, &c, now + 1701, &ev), TP_BREAKER_TRIAL);
    CHECK_INT(tp_breaker_record(b, &c, 0, 1, now + 1750, &f, &n), TP_BREAKER_RESET);
    CHECK_INT(tp_breaker_allow(b, &c, now + 1760, &ev), TP_BREAKER_PASS);
    /* tripped again without half-open: only return_to_service_after closes it */
    c.half_open = 0;
    for (int i = 0; i < 4; i++)
        tp_breaker_record(b, &c, 1, 0, now + 2000, &f, &n);
    CHECK_INT(tp_breaker_allow(b, &c, now + 6999, &ev), TP_BREAKER_REFUSE);
    CHECK_INT(tp_breaker_allow(b, &c, now + 7000, &ev), TP_BREAKER_PASS);
    CHECK_INT(ev, TP_BREAKER_RESET);
    tp_buf_t out = {0};
    tp_breakers_show(t, now + 7000, &out);
    CHECK(strstr(out.data, "api GET /x") != NULL && strstr(out.data, "closed") != NULL);
    tp_buf_free(&out);
}

TP_TEST(hosts_down_and_up)
{
    char err[256];
    tp_hosts_t *t = tp_hosts_create(4, err, sizeof(err));
    CHECK(t != NULL);
    CHECK_INT(tp_hosts_down(t, "10.0.0.1:80", 11), 0);
    CHECK_INT(tp_hosts_set(t, "10.0.0.1:80", 11, 1), 0);
    CHECK_INT(tp_hosts_down(t, "10.0.0.1:80", 11), 1);
    CHECK_INT(tp_hosts_down(t, "10.0.0.1:8", 10), 0);
    CHECK_INT(tp_hosts_ndown(t), 1);
    /* many more than the table was sized for still find their place until it is full */
    char h[32];
    int placed = 0;
    for (int i = 0; i < 200; i++) {
        int n = snprintf(h, sizeof(h), "h%d:1", i);
        placed += tp_hosts_set(t, h, (size_t)n, 1) == 0;
    }
    CHECK_INT(placed, 63);
    CHECK_INT(tp_hosts_down(t, "h5:1", 4), 1);
    CHECK_INT(tp_hosts_set(t, "10.0.0.1:80", 11, 0), 0);
    CHECK_INT(tp_hosts_down(t, "10.0.0.1:80", 11), 0);
    CHECK_INT(tp_hosts_ndown(t), 63);
}

void test_shm_suite(void)
{
    TP_RUN(breaker_trips_half_opens_and_resets);
    TP_RUN(hosts_down_and_up);
    TP_RUN(shm_publish_and_read);
    TP_RUN(shm_slots_wait_for_old_readers);
    TP_RUN(shm_long_request_pins_one_slot);
    TP_RUN(shm_too_small_keeps_the_old_generation);
    TP_RUN(scache_put_get_refresh_evict);
    TP_RUN(limits_gcra_burst_then_steady);
    TP_RUN(limits_processes_share_exactly_and_the_table_recycles);
    TP_RUN(limits_quota_lease);
    TP_RUN(strmap_put_get_grow);
    TP_RUN(json_print_indent_like_go);
    TP_RUN(notice_signature_and_format);
}
