/*
 * master/tp_check_redis.c: `turnpike --check-redis`: connect with the
 * configured storage settings, run PING and a write/read/delete on a
 * scratch key, and say what worked. For operators debugging a deployment.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "tp_master.h"
#include "tp_redis.h"
#include "tp_time.h"

typedef struct check_s {
    tp_redis_t *r;
    uv_timer_t deadline;
    int step;
    int failed;
    char key[96];
    char value[64];
    uint64_t t0;
} check_t;

static void next(void *arg, const redisReply *rep, const char *err);

static void report(check_t *k, const char *what, const redisReply *rep, const char *err, int ok)
{
    double ms = (double)(tp_time_mono_ms() - k->t0);
    if (err != NULL)
        printf("  %-6s FAILED: %s\n", what, err);
    else if (!ok)
        printf("  %-6s FAILED: unexpected reply: %s\n", what,
               rep->type == REDIS_REPLY_ERROR || rep->type == REDIS_REPLY_STATUS ||
                       rep->type == REDIS_REPLY_STRING
                   ? rep->str
                   : "(other type)");
    else
        printf("  %-6s ok (%.0f ms)\n", what, ms);
    if (err != NULL || !ok)
        k->failed = 1;
}

static void finish(check_t *k)
{
    char buf[512];
    printf("  topology: %s\n", tp_redis_describe(k->r, buf, sizeof(buf)));
    printf("%s\n", k->failed ? "Redis check FAILED" : "Redis check passed");
    uv_timer_stop(&k->deadline);
    uv_close((uv_handle_t *)&k->deadline, NULL);
    tp_redis_free(k->r);
}

static void next(void *arg, const redisReply *rep, const char *err)
{
    check_t *k = arg;
    switch (k->step++) {
    case 0:
        report(k, "PING", rep, err, err == NULL && rep->type == REDIS_REPLY_STATUS);
        if (k->failed)
            break;
        k->t0 = tp_time_mono_ms();
        tp_redis_cmd(k->r, next, k, "SET %s %s EX 60", k->key, k->value);
        return;
    case 1:
        report(k, "SET", rep, err, err == NULL && rep->type == REDIS_REPLY_STATUS);
        if (k->failed)
            break;
        k->t0 = tp_time_mono_ms();
        tp_redis_cmd(k->r, next, k, "GET %s", k->key);
        return;
    case 2:
        report(k, "GET", rep, err,
               err == NULL && rep->type == REDIS_REPLY_STRING && strcmp(rep->str, k->value) == 0);
        k->t0 = tp_time_mono_ms();
        tp_redis_cmd(k->r, next, k, "DEL %s", k->key);
        return;
    case 3:
        report(k, "DEL", rep, err, err == NULL && rep->type == REDIS_REPLY_INTEGER);
        break;
    default:
        return;
    }
    finish(k);
}

static void on_deadline(uv_timer_t *t)
{
    check_t *k = t->data;
    printf("  gave up waiting for an answer\n");
    k->failed = 1;
    k->step = 99;
    finish(k);
}

int tp_check_redis(const tp_conf_t *conf)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[512];
    check_t k = {0};
    const tp_conf_storage_t *st = &conf->storage;
    printf("checking Redis with the settings of %s\n", conf->file);
    k.r = tp_redis_new(&loop, st, "check", err, sizeof(err));
    if (k.r == NULL) {
        printf("  settings FAILED: %s\nRedis check FAILED\n", err);
        uv_loop_close(&loop);
        return 1;
    }
    char buf[512];
    printf("  target: %s\n", tp_redis_describe(k.r, buf, sizeof(buf)));
    snprintf(k.key, sizeof(k.key), "turnpike-check-redis-%d-%llu", (int)getpid(),
             (unsigned long long)tp_time_wall_us());
    snprintf(k.value, sizeof(k.value), "%llx", (unsigned long long)tp_time_wall_us());
    uv_timer_init(&loop, &k.deadline);
    k.deadline.data = &k;
    uv_timer_start(&k.deadline, on_deadline, (uint64_t)(st->timeout > 0 ? st->timeout : 5) * 4000,
                   0);
    k.t0 = tp_time_mono_ms();
    tp_redis_cmd(k.r, next, &k, "PING");
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return k.failed ? 1 : 0;
}
