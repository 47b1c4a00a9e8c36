/* test/unit/test_chain.c: the stage runner and the chain builder. */
#include <stdlib.h>
#include <string.h>

#include "tp_arena.h"
#include "tp_chain.h"
#include "tp_test.h"
#include "tp_worker.h"

/* What the fake stages did, in order: "a" ran, "b~" was cancelled, "!" failed. */
static char trace[128];
static tp_stage_rc_t answer_b; /* what stage b answers */

static void note(const char *s)
{
    strncat(trace, s, sizeof(trace) - strlen(trace) - 1);
}

static tp_stage_rc_t run_a(tp_req_t *req)
{
    (void)req;
    note("a");
    return TP_STAGE_NEXT;
}

static tp_stage_rc_t run_b(tp_req_t *req)
{
    (void)req;
    note("b");
    return answer_b;
}

static void cancel_b(tp_req_t *req)
{
    (void)req;
    note("b~");
}

static tp_stage_rc_t run_c(tp_req_t *req)
{
    (void)req;
    note("c");
    return TP_STAGE_DONE;
}

static void failed(tp_req_t *req)
{
    (void)req;
    note("!");
}

static int only_keyed(const tp_chain_api_t *a)
{
    return !a->keyless;
}

static const tp_stage_t st_a = {.name = "a", .run = run_a};
static const tp_stage_t st_b = {.name = "b", .run = run_b, .cancel = cancel_b};
static const tp_stage_t st_c = {.name = "c", .run = run_c};
static const tp_stage_t st_k = {.name = "k", .wanted = only_keyed, .run = run_a};
static const tp_stage_t *const table[] = {&st_a, &st_b, &st_k, &st_c};

/* Runs the fake chain for a keyed API with stage b answering <b>. */
static tp_req_t *start(tp_chain_t *c, tp_stage_rc_t b)
{
    tp_chain_api_t api = {0};
    trace[0] = '\0';
    answer_b = b;
    tp_req_t *req = calloc(1, sizeof(*req));
    if (tp_chain_build(c, table, 4, &api, failed) != 0)
        return req;
    tp_chain_start(req, c);
    return req;
}

TP_TEST(test_chain_next_runs_all_in_order)
{
    tp_chain_t c;
    tp_req_t *req = start(&c, TP_STAGE_NEXT);
    CHECK_INT(c.n, 4);
    CHECK_STR(trace, "abac"); /* k runs run_a */
    tp_chain_cancel(req);
    CHECK_STR(trace, "abac"); /* nothing waits: nothing to cancel */
    free(req);
}

TP_TEST(test_chain_done_stops)
{
    tp_chain_t c;
    tp_req_t *req = start(&c, TP_STAGE_DONE);
    CHECK_STR(trace, "ab");
    free(req);
}

TP_TEST(test_chain_later_resumes)
{
    tp_chain_t c;
    tp_req_t *req = start(&c, TP_STAGE_LATER);
    CHECK_STR(trace, "ab");
    CHECK(req->run.waiting);
    tp_chain_resume(req, TP_STAGE_NEXT); /* b's wait is over */
    CHECK_STR(trace, "abac");
    free(req);
}

TP_TEST(test_chain_error_answers_once)
{
    tp_chain_t c;
    tp_req_t *req = start(&c, TP_STAGE_ERROR);
    CHECK_STR(trace, "ab!");
    free(req);
    /* an error after a wait goes the same way */
    req = start(&c, TP_STAGE_LATER);
    tp_chain_resume(req, TP_STAGE_ERROR);
    CHECK_STR(trace, "ab!");
    tp_chain_cancel(req);
    CHECK_STR(trace, "ab!");
    free(req);
}

TP_TEST(test_chain_cancel_while_waiting)
{
    tp_chain_t c;
    tp_req_t *req = start(&c, TP_STAGE_LATER);
    tp_chain_cancel(req); /* the client went away */
    CHECK_STR(trace, "abb~");
    CHECK(req->run.chain == NULL);
    tp_chain_cancel(req); /* once only */
    CHECK_STR(trace, "abb~");
    free(req);
}

TP_TEST(test_chain_builder_skips_unwanted)
{
    tp_chain_t c;
    tp_chain_api_t keyless = {.keyless = 1};
    CHECK_INT(tp_chain_build(&c, table, 4, &keyless, failed), 0);
    CHECK_INT(c.n, 3);
    CHECK_STR(c.stage[2]->name, "c");
    const tp_stage_t *many[TP_CHAIN_MAX + 1];
    for (size_t i = 0; i < TP_CHAIN_MAX + 1; i++)
        many[i] = &st_a;
    CHECK_INT(tp_chain_build(&c, many, TP_CHAIN_MAX + 1, &keyless, failed), -1);
}

/* The gateway's chain for an API, as stage names joined by spaces. */
static const char *names(const tp_chain_api_t *a, char *out, size_t cap)
{
    tp_chain_t c;
    out[0] = '\0';
    if (tp_chain_build_api(&c, a, failed) != 0)
        return "(failed)";
    for (unsigned i = 0; i < c.n; i++) {
        if (i > 0)
            strncat(out, " ", cap - strlen(out) - 1);
        strncat(out, c.stage[i]->name, cap - strlen(out) - 1);
    }
    return out;
}

TP_TEST(test_chain_gateway_order)
{
    char b[256];
    tp_chain_api_t keyless = {.keyless = 1};
    CHECK_STR(names(&keyless, b, sizeof(b)), "version paths proxy");
    tp_chain_api_t keyless_limited = {.keyless = 1, .api_limits = 1};
    CHECK_STR(names(&keyless_limited, b, sizeof(b)), "version paths api_limit proxy");
    tp_chain_api_t keyed = {0};
    CHECK_STR(names(&keyed, b, sizeof(b)), "version paths key access key_limit proxy");
    tp_chain_api_t keyed_limited = {.api_limits = 1};
    CHECK_STR(names(&keyed_limited, b, sizeof(b)),
              "version paths key access key_limit api_limit proxy");
    tp_chain_api_t jwt = {.jwt = 1, .no_token = 1};
    CHECK_STR(names(&jwt, b, sizeof(b)), "version paths jwt jwt_check access key_limit proxy");
    tp_chain_api_t jwt_and_key = {.jwt = 1};
    CHECK_STR(names(&jwt_and_key, b, sizeof(b)),
              "version paths jwt jwt_check key access key_limit proxy");
    tp_chain_api_t cors = {.keyless = 1, .cors = 1};
    CHECK_STR(names(&cors, b, sizeof(b)), "version paths cors proxy");
    tp_chain_api_t timed = {.keyless = 1, .timeouts = 1};
    CHECK_STR(names(&timed, b, sizeof(b)), "version paths timeouts proxy");
    /* Tyk's processSpec: the size limit before auth; header transforms,
     * the rewrite and the method change after every limit */
    tp_chain_api_t mw = {.headers = 1,
                         .rewrites = 1,
                         .mtransforms = 1,
                         .size_limits = 1,
                         .api_limits = 1,
                         .timeouts = 1};
    CHECK_STR(names(&mw, b, sizeof(b)),
              "version paths size_limit key access key_limit api_limit headers url_rewrite "
              "method_transform timeouts proxy");
    /* every API's responses carry the expiry and X-RateLimit-* when set */
    tp_chain_t c;
    CHECK_INT(tp_chain_build_api(&c, &keyless, failed), 0);
    CHECK_INT(c.nresp, 2);
    CHECK_STR(c.resp[0]->name, "expires");
    CHECK_STR(c.resp[1]->name, "rl_headers");
    /* the upstream's headers are changed before the gateway adds its own */
    tp_chain_api_t rh = {.keyless = 1, .resp_headers = 1};
    CHECK_INT(tp_chain_build_api(&c, &rh, failed), 0);
    CHECK_INT(c.nresp, 3);
    CHECK_STR(c.resp[0]->name, "resp_headers");
    /* the response cache: after the rewrites (Tyk's RedisCacheMiddleware),
     * it takes the stored head after the upstream-side header changes and
     * before the gateway's own, and stores once the response went out; a
     * body is read first only when an endpoint hashes one */
    tp_chain_api_t cached = {.keyless = 1, .cache = 1, .rewrites = 1, .resp_headers = 1};
    CHECK_STR(names(&cached, b, sizeof(b)), "version paths url_rewrite cache proxy");
    /* an internal loop leaves after the cache, before this API's timeouts
     * and breakers (the target's apply) */
    tp_chain_api_t loops = {.keyless = 1, .cache = 1, .rewrites = 1, .loops = 1, .timeouts = 1};
    CHECK_STR(names(&loops, b, sizeof(b)), "version paths url_rewrite cache loop timeouts proxy");
    CHECK_INT(tp_chain_build_api(&c, &cached, failed), 0);
    CHECK_INT(c.nresp, 4);
    CHECK_STR(c.resp[0]->name, "resp_headers");
    CHECK_STR(c.resp[1]->name, "cache_capture");
    CHECK_STR(c.resp[2]->name, "expires");
    CHECK_INT(c.nlog >= 1, 1);
    CHECK_STR(c.log[0]->name, "cache_store");
    tp_chain_api_t cached_body = {.keyless = 1, .cache = 1, .cache_body = 1};
    CHECK_STR(names(&cached_body, b, sizeof(b)), "version paths body cache proxy");
}

/* ---- entering another chain, a chain that runs out --------------------------------- */

static tp_chain_t entered; /* what stage e enters */

static tp_stage_rc_t run_e(tp_req_t *req)
{
    note("e");
    tp_chain_enter(req, &entered);
    return TP_STAGE_NEXT;
}

static const tp_stage_t st_e = {.name = "e", .run = run_e};

TP_TEST(test_chain_enter_goes_on_with_the_api_chain)
{
    static const tp_stage_t *const front[] = {&st_a, &st_e, &st_c};
    static const tp_stage_t *const api[] = {&st_b, &st_c};
    tp_chain_api_t a = {0};
    tp_chain_t f;
    CHECK_INT(tp_chain_build(&f, front, 3, &a, failed), 0);
    CHECK_INT(tp_chain_build(&entered, api, 2, &a, failed), 0);
    trace[0] = '\0';
    answer_b = TP_STAGE_LATER;
    tp_req_t *req = calloc(1, sizeof(*req));
    tp_chain_start(req, &f);
    CHECK_STR(trace, "aeb"); /* the front's c is not run: e entered the API's chain */
    CHECK(req->run.chain == &entered);
    tp_chain_resume(req, TP_STAGE_NEXT);
    CHECK_STR(trace, "aebc");
    free(req);
}

TP_TEST(test_chain_that_runs_out_fails)
{
    static const tp_stage_t *const only_a[] = {&st_a};
    tp_chain_api_t a = {0};
    tp_chain_t c;
    CHECK_INT(tp_chain_build(&c, only_a, 1, &a, failed), 0);
    trace[0] = '\0';
    tp_req_t *req = calloc(1, sizeof(*req));
    tp_chain_start(req, &c);
    CHECK_STR(trace, "a!"); /* nobody answered: the chain's fail hook does */
    free(req);
}

/* ---- stage state in the request's arena --------------------------------------------- */

static void *seen_state; /* what s's cancel found */
static int state_bad;    /* a stage saw the wrong state */

static tp_stage_rc_t run_s(tp_req_t *req)
{
    state_bad |= tp_chain_state_peek(req) != NULL; /* not asked for yet */
    int *n = tp_chain_state(req);
    state_bad |= tp_chain_state(req) != n; /* the same on every call */
    state_bad |= ((uintptr_t)n) % 16 != 0;
    *n = 42;
    note("s");
    return TP_STAGE_LATER;
}

static void cancel_s(tp_req_t *req)
{
    seen_state = tp_chain_state_peek(req);
    note("s~");
}

static tp_stage_rc_t run_t(tp_req_t *req)
{
    state_bad |= tp_chain_state_peek(req) != NULL; /* its own, not s's */
    char *big = tp_chain_state(req);
    memset(big, 'x', 20000); /* beyond one chunk */
    note("t");
    return TP_STAGE_DONE;
}

static const tp_stage_t st_s = {
    .name = "s", .run = run_s, .cancel = cancel_s, .state = sizeof(int)};
static const tp_stage_t st_t = {.name = "t", .run = run_t, .state = 20000};

TP_TEST(test_chain_stage_state)
{
    static const tp_stage_t *const tab[] = {&st_s, &st_t};
    tp_chain_api_t a = {0};
    tp_chain_t c;
    CHECK_INT(tp_chain_build(&c, tab, 2, &a, failed), 0);
    /* a request cancelled while s waits: s's cancel sees s's state */
    trace[0] = '\0';
    state_bad = 0;
    tp_req_t *req = calloc(1, sizeof(*req));
    tp_chain_start(req, &c);
    int *n = req->run.state[0];
    CHECK(n != NULL && *n == 42);
    tp_chain_cancel(req);
    CHECK(seen_state == n);
    CHECK_STR(trace, "ss~");
    tp_arena_reset(&req->arena);
    /* the next request on the same tp_req_t: fresh state, same memory */
    trace[0] = '\0';
    tp_chain_start(req, &c);
    CHECK(req->run.state[0] == n); /* the kept chunk */
    tp_chain_resume(req, TP_STAGE_NEXT);
    CHECK_STR(trace, "st");
    CHECK_INT(state_bad, 0);
    CHECK(req->run.state[1] != NULL && ((char *)req->run.state[1])[19999] == 'x');
    tp_chain_cancel(req);
    tp_arena_free(&req->arena);
    free(req);
}

TP_TEST(test_arena_chunks)
{
    tp_arena_t a = {0};
    char *p = tp_arena_alloc(&a, 1), *q = tp_arena_alloc(&a, 1);
    CHECK_INT(q - p, 16); /* 16-byte steps */
    char *big = tp_arena_alloc(&a, 3 * TP_ARENA_CHUNK);
    memset(big, 1, 3 * TP_ARENA_CHUNK);
    char *z = tp_arena_calloc(&a, 100);
    CHECK_INT(z[0] | z[99], 0);
    for (int i = 0; i < 1000; i++) /* many chunks */
        memset(tp_arena_alloc(&a, 100), 2, 100);
    tp_arena_reset(&a);
    CHECK(tp_arena_alloc(&a, 8) == p); /* the first chunk is kept */
    tp_arena_free(&a);
    CHECK(a.keep == NULL && a.cur == NULL);
    tp_arena_free(&a); /* twice is fine */
}

TP_TEST(test_go_durations)
{
    CHECK(tp_go_duration_ms("1.5s") == 1500);
    CHECK(tp_go_duration_ms("300ms") == 300);
    CHECK(tp_go_duration_ms("1m30s") == 90000);
    CHECK(tp_go_duration_ms("2h") == 7200000);
    CHECK(tp_go_duration_ms("1500us") == 2); /* rounded up */
    CHECK(tp_go_duration_ms("1\xc2\xb5s") == 1);
    CHECK(tp_go_duration_ms("0") == 0);
    CHECK(tp_go_duration_ms("") == -1);
    CHECK(tp_go_duration_ms("5") == -1);
    CHECK(tp_go_duration_ms("1x") == -1);
    CHECK(tp_go_duration_ms("-1s") == -1);
}

TP_TEST(test_chain_front_order)
{
    tp_chain_t c;
    tp_chain_build_front(&c, failed);
    CHECK_INT(c.n, 4);
    CHECK_STR(c.stage[0]->name, "protocol");
    CHECK_STR(c.stage[1]->name, "target");
    CHECK_STR(c.stage[2]->name, "builtin");
    CHECK_STR(c.stage[3]->name, "route");
}

void test_chain_suite(void)
{
    TP_RUN(test_chain_next_runs_all_in_order);
    TP_RUN(test_chain_done_stops);
    TP_RUN(test_chain_later_resumes);
    TP_RUN(test_chain_error_answers_once);
    TP_RUN(test_chain_cancel_while_waiting);
    TP_RUN(test_chain_builder_skips_unwanted);
    TP_RUN(test_chain_gateway_order);
    TP_RUN(test_chain_enter_goes_on_with_the_api_chain);
    TP_RUN(test_chain_that_runs_out_fails);
    TP_RUN(test_chain_stage_state);
    TP_RUN(test_arena_chunks);
    TP_RUN(test_chain_front_order);
    TP_RUN(test_go_durations);
}
