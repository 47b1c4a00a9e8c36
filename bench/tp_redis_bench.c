/*
 * bench/tp_redis_bench.c: the Redis client driven as a worker drives it, to
 * compare with redis-benchmark on the same server (bench/redis.sh).
 *
 * One libuv loop, <callers> callers each keeping one command outstanding
 * (so <callers> commands are in flight, pipelined by the client over its
 * pool), for <seconds> per command type; prints "<type> <ops/s>" lines.
 *
 *   tp_redis_bench --port P [--callers 800] [--seconds 3] [--types get,incr,evalsha]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "tp_conf.h"
#include "tp_log.h"
#include "tp_redis.h"
#include "tp_time.h"

/* the fixed-window counter Turnpike's limiter family uses */
static const char script[] = "local c = redis.call('INCR', KEYS[1]) "
                             "if c == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end "
                             "return c";

typedef struct bench_s {
    uv_loop_t loop;
    tp_redis_t *r;
    uv_timer_t stop;
    const char *type;
    char sha[41];
    int running;
    long done;
    long errors;
    long outstanding;
    unsigned seed;
} bench_t;

static void issue(bench_t *b);

static void on_reply(void *arg, const redisReply *rep, const char *err)
{
    bench_t *b = arg;
    b->outstanding--;
    if (err != NULL || rep->type == REDIS_REPLY_ERROR)
        b->errors++;
    else
        b->done++;
    if (b->running)
        issue(b);
    else if (b->outstanding == 0)
        uv_stop(&b->loop);
}

static void issue(bench_t *b)
{
    /* random keys among 10,000, like redis-benchmark -r 10000 */
    b->seed = b->seed * 1103515245u + 12345u;
    unsigned k = (b->seed >> 8) % 10000;
    char key[32];
    snprintf(key, sizeof(key), "key:%06u", k);
    b->outstanding++;
    if (strcmp(b->type, "get") == 0)
        tp_redis_cmd(b->r, on_reply, b, "GET %s", key);
    else if (strcmp(b->type, "incr") == 0)
        tp_redis_cmd(b->r, on_reply, b, "INCR %s", key);
    else
        tp_redis_cmd(b->r, on_reply, b, "EVALSHA %s 1 %s 1000", b->sha, key);
}

static void on_stop(uv_timer_t *t)
{
    bench_t *b = t->data;
    b->running = 0;
}

static void on_loaded(void *arg, const redisReply *rep, const char *err)
{
    bench_t *b = arg;
    if (err == NULL && rep->type == REDIS_REPLY_STRING)
        snprintf(b->sha, sizeof(b->sha), "%s", rep->str);
    else
        fprintf(stderr, "SCRIPT LOAD failed: %s\n", err ? err : rep->str);
    uv_stop(&b->loop);
}

int main(int argc, char **argv)
{
    int port = 6379, callers = 800, seconds = 3;
    char types[64] = "get,incr,evalsha";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--port") == 0)
            port = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--callers") == 0)
            callers = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--types") == 0)
            snprintf(types, sizeof(types), "%s", argv[i + 1]);
    }
    tp_log_g.level = TP_LOG_WARN;
    tp_conf_storage_t st = {0};
    st.host = "127.0.0.1";
    st.port = port;
    st.timeout = 5;
    st.max_active = 500;
    bench_t b = {.seed = 42};
    char err[256];
    uv_loop_init(&b.loop);
    b.r = tp_redis_new(&b.loop, &st, "bench", err, sizeof(err));
    if (b.r == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    tp_redis_cmd(b.r, on_loaded, &b, "SCRIPT LOAD %s", script);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    uv_timer_init(&b.loop, &b.stop);
    b.stop.data = &b;

    for (char *type = strtok(types, ","); type != NULL; type = strtok(NULL, ",")) {
        b.type = type;
        /* warm-up: connections open and the pool grows */
        b.running = 1;
        uv_timer_start(&b.stop, on_stop, 500, 0);
        for (int i = 0; i < callers; i++)
            issue(&b);
        uv_run(&b.loop, UV_RUN_DEFAULT);
        b.done = b.errors = 0;
        b.running = 1;
        uint64_t t0 = tp_time_mono_ms();
        uv_timer_start(&b.stop, on_stop, (uint64_t)seconds * 1000, 0);
        for (int i = 0; i < callers; i++)
            issue(&b);
        uv_run(&b.loop, UV_RUN_DEFAULT);
        double secs = (double)(tp_time_mono_ms() - t0) / 1000.0;
        printf("%s %.0f", type, (double)b.done / secs);
        if (b.errors)
            printf(" (%ld errors)", b.errors);
        printf("\n");
        fflush(stdout);
    }
    tp_redis_free(b.r);
    uv_close((uv_handle_t *)&b.stop, NULL);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    uv_loop_close(&b.loop);
    return 0;
}
