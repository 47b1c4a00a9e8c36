/*
 * common/tp_redis_script.c: see tp_redis_script.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/sha1.h>

#include "tp_buf.h"
#include "tp_err.h"
#include "tp_redis_script.h"

#define MAX_ARGS 16

struct tp_eval_s {
    tp_redis_t *r;
    const tp_script_t *s;
    tp_redis_cb cb;
    void *arg;
    int retried; /* sent whole after NOSCRIPT */
    int argc;
    const char *argv[MAX_ARGS + 3];
    size_t lens[MAX_ARGS + 3];
    char nkeys[16];
    char data[]; /* copies of the arguments */
};

void tp_script_init(tp_script_t *s, const char *src)
{
    unsigned char d[20];
    mbedtls_sha1_ret((const unsigned char *)src, strlen(src), d);
    tp_hex(s->sha, d, 20);
    s->src = src;
}

static void eval_send(tp_eval_t *e);

static void on_reply(void *arg, const redisReply *rep, const char *err)
{
    tp_eval_t *e = arg;
    if (err == NULL && rep->type == REDIS_REPLY_ERROR && !e->retried &&
        strncmp(rep->str, "NOSCRIPT", 8) == 0) {
        e->retried = 1;
        eval_send(e);
        return;
    }
    if (e->cb != NULL)
        e->cb(e->arg, rep, err);
    free(e);
}

static void eval_send(tp_eval_t *e)
{
    e->argv[0] = e->retried ? "EVAL" : "EVALSHA";
    e->lens[0] = strlen(e->argv[0]);
    e->argv[1] = e->retried ? e->s->src : e->s->sha;
    e->lens[1] = strlen(e->argv[1]);
    tp_redis_cmdv(e->r, on_reply, e, e->argc, e->argv, e->lens);
}

tp_eval_t *tp_redis_eval(tp_redis_t *r, const tp_script_t *s, tp_redis_cb cb, void *arg, int nkeys,
                         int nargs, const char *const *args, const size_t *lens)
{
    TP_BUG_ON(nargs > MAX_ARGS);
    size_t total = 0;
    for (int i = 0; i < nargs; i++)
        total += (lens != NULL ? lens[i] : strlen(args[i])) + 1;
    tp_eval_t *e = tp_malloc(sizeof(*e) + total);
    e->r = r;
    e->s = s;
    e->cb = cb;
    e->arg = arg;
    e->retried = 0;
    snprintf(e->nkeys, sizeof(e->nkeys), "%d", nkeys);
    e->argv[2] = e->nkeys;
    e->lens[2] = strlen(e->nkeys);
    char *p = e->data;
    for (int i = 0; i < nargs; i++) {
        size_t n = lens != NULL ? lens[i] : strlen(args[i]);
        memcpy(p, args[i], n);
        p[n] = '\0';
        e->argv[3 + i] = p;
        e->lens[3 + i] = n;
        p += n + 1;
    }
    e->argc = 3 + nargs;
    eval_send(e);
    return e;
}

void tp_redis_eval_cancel(tp_eval_t *e)
{
    e->cb = NULL;
}
