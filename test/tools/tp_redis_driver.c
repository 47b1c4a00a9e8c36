/*
 * test/tools/tp_redis_driver.c: drives the Redis client the way a worker
 * does, for the integration tests: <concurrency> callers each run
 * SET -> GET (checked) -> INCR in a loop on keys of their own for
 * <seconds>, then wait for every outstanding command. Prints a JSON
 * summary: how many commands succeeded, failed (by message), returned
 * wrong data, the slowest answer, and how many never got one ("hung").
 *
 *   tp_redis_driver --conf FILE [--seconds 5] [--concurrency 16] [--keys 100]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "tp_conf.h"
#include "tp_log.h"
#include "tp_redis.h"
#include "tp_time.h"

#define MAX_ERRS 16

typedef struct caller_s caller_t;

typedef struct driver_s {
    uv_loop_t loop;
    tp_redis_t *r;
    uv_timer_t stop;
    uv_timer_t grace;
    uv_timer_t tick;
    int stopping;
    int keys;
    long ok, failed, wrong, outstanding;
    long per_sec_ok[600], per_sec_err[600];
    int sec;
    uint64_t max_ms;
    uint64_t t_start;
    struct {
        char msg[80];
        long n;
    } errs[MAX_ERRS];
    int nerrs;
} driver_t;

struct caller_s {
    driver_t *d;
    int id;
    long seq;
    int step;
    char key[64];
    char value[64];
    uint64_t sent_at;
};

static void step(caller_t *c);

static void count_error(driver_t *d, const char *err)
{
    char msg[80];
    snprintf(msg, sizeof(msg), "%s", err);
    /* group by the text before any number-heavy detail */
    for (char *p = msg; *p; p++)
        if (*p >= '0' && *p <= '9')
            *p = '#';
    for (int i = 0; i < d->nerrs; i++)
        if (strcmp(d->errs[i].msg, msg) == 0) {
            d->errs[i].n++;
            return;
        }
    if (d->nerrs < MAX_ERRS) {
        snprintf(d->errs[d->nerrs].msg, sizeof(d->errs[0].msg), "%s", msg);
        d->errs[d->nerrs++].n = 1;
    }
}

static void on_reply(void *arg, const redisReply *rep, const char *err)
{
    caller_t *c = arg;
    driver_t *d = c->d;
    uint64_t took = tp_time_mono_ms() - c->sent_at;
    d->outstanding--;
    if (took > d->max_ms)
        d->max_ms = took;
    int sec = d->sec < 600 ? d->sec : 599;
    if (err != NULL || rep->type == REDIS_REPLY_ERROR) {
        d->failed++;
        d->per_sec_err[sec]++;
        count_error(d, err != NULL ? err : rep->str);
        c->step = 0; /* start over with a fresh SET */
    } else {
        d->ok++;
        d->per_sec_ok[sec]++;
        if (c->step == 1 && (rep->type != REDIS_REPLY_STRING || strcmp(rep->str, c->value) != 0))
            d->wrong++;
        c->step = (c->step + 1) % 3;
    }
    step(c);
}

static void step(caller_t *c)
{
    driver_t *d = c->d;
    if (d->stopping)
        return;
    c->sent_at = tp_time_mono_ms();
    d->outstanding++;
    switch (c->step) {
    case 0:
        snprintf(c->key, sizeof(c->key), "drv:%d:%ld", c->id, c->seq % d->keys);
        snprintf(c->value, sizeof(c->value), "v%ld", c->seq++);
        tp_redis_cmd(d->r, on_reply, c, "SET %s %s", c->key, c->value);
        break;
    case 1:
        tp_redis_cmd(d->r, on_reply, c, "GET %s", c->key);
        break;
    default:
        tp_redis_cmd(d->r, on_reply, c, "INCR drv:ctr:%d", c->id);
        break;
    }
}

static void on_grace(uv_timer_t *t)
{
    driver_t *d = t->data;
    uv_stop(&d->loop);
}

static void on_tick(uv_timer_t *t)
{
    driver_t *d = t->data;
    d->sec++;
    if (d->stopping && d->outstanding == 0)
        uv_stop(&d->loop);
}

static void on_stop(uv_timer_t *t)
{
    driver_t *d = t->data;
    d->stopping = 1;
}

int main(int argc, char **argv)
{
    const char *conf_path = NULL;
    int seconds = 5, conc = 16;
    driver_t *d = calloc(1, sizeof(*d));
    d->keys = 100;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--conf") == 0)
            conf_path = argv[i + 1];
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--concurrency") == 0)
            conc = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--keys") == 0)
            d->keys = atoi(argv[i + 1]);
    }
    tp_conf_t conf;
    char err[4096];
    tp_log_g.level = TP_LOG_WARN;
    if (tp_conf_load(conf_path, &conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    uv_loop_init(&d->loop);
    d->r = tp_redis_new(&d->loop, &conf.storage, "driver", err, sizeof(err));
    if (d->r == NULL) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    uv_timer_init(&d->loop, &d->stop);
    uv_timer_init(&d->loop, &d->grace);
    uv_timer_init(&d->loop, &d->tick);
    d->stop.data = d->grace.data = d->tick.data = d;
    uv_timer_start(&d->stop, on_stop, (uint64_t)seconds * 1000, 0);
    /* after the run, every command gets its timeout and a second more */
    uint64_t grace = (uint64_t)seconds * 1000 + (uint64_t)(conf.storage.timeout) * 2000 + 1000;
    uv_timer_start(&d->grace, on_grace, grace, 0);
    uv_timer_start(&d->tick, on_tick, 1000, 1000);
    caller_t *callers = calloc((size_t)conc, sizeof(*callers));
    d->t_start = tp_time_mono_ms();
    for (int i = 0; i < conc; i++) {
        callers[i].d = d;
        callers[i].id = i;
        step(&callers[i]);
    }
    uv_run(&d->loop, UV_RUN_DEFAULT);

    printf("{\"ok\": %ld, \"failed\": %ld, \"wrong\": %ld, \"hung\": %ld, \"max_ms\": %llu, "
           "\"seconds\": %d, \"per_sec_ok\": [",
           d->ok, d->failed, d->wrong, d->outstanding, (unsigned long long)d->max_ms, d->sec);
    for (int i = 0; i < d->sec && i < 600; i++)
        printf("%s%ld", i ? ", " : "", d->per_sec_ok[i]);
    printf("], \"per_sec_err\": [");
    for (int i = 0; i < d->sec && i < 600; i++)
        printf("%s%ld", i ? ", " : "", d->per_sec_err[i]);
    printf("], \"errors\": {");
    for (int i = 0; i < d->nerrs; i++) {
        printf("%s\"", i ? ", " : "");
        for (const char *p = d->errs[i].msg; *p; p++)
            printf(*p == '"' || *p == '\\' ? "\\%c" : "%c", *p);
        printf("\": %ld", d->errs[i].n);
    }
    printf("}}\n");
    fflush(stdout);
    tp_redis_free(d->r);
    uv_close((uv_handle_t *)&d->stop, NULL);
    uv_close((uv_handle_t *)&d->grace, NULL);
    uv_close((uv_handle_t *)&d->tick, NULL);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    uv_loop_close(&d->loop);
    tp_conf_free(&conf);
    free(callers);
    free(d);
    return 0;
}
