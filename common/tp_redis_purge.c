/*
 * common/tp_redis_purge.c: see tp_redis_purge.h.
 */
#include <stdlib.h>
#include <string.h>

#include "tp_err.h"
#include "tp_redis_purge.h"

struct tp_redis_purge_s {
    tp_redis_t *r;
    char *pattern;
    char cursor[32];
    tp_redis_purge_cb cb;
    void *arg;
    long deleted;
    int pending;   /* DELs not answered yet */
    int scan_done; /* the cursor came back to 0 */
    char err[256];
};

static void scan_next(tp_redis_purge_t *p);

static void finish(tp_redis_purge_t *p)
{
    if (p->cb != NULL)
        p->cb(p->arg, p->deleted, p->err[0] ? p->err : NULL);
    free(p->pattern);
    free(p);
}

static void on_del(void *arg, const redisReply *reply, const char *err)
{
    tp_redis_purge_t *p = arg;
    if (err != NULL || reply->type == REDIS_REPLY_ERROR)
        snprintf(p->err, sizeof(p->err), "DEL: %s", err != NULL ? err : reply->str);
    else if (reply->type == REDIS_REPLY_INTEGER)
        p->deleted += (long)reply->integer;
    if (--p->pending > 0)
        return;
    if (p->scan_done || p->err[0])
        finish(p);
    else
        scan_next(p);
}

static void on_scan(void *arg, const redisReply *reply, const char *err)
{
    tp_redis_purge_t *p = arg;
    if (err != NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY) {
        snprintf(p->err, sizeof(p->err), "SCAN: %s",
                 err != NULL                        ? err
                 : reply->type == REDIS_REPLY_ERROR ? reply->str
                                                    : "an unexpected reply");
        finish(p);
        return;
    }
    snprintf(p->cursor, sizeof(p->cursor), "%s", reply->element[0]->str);
    p->scan_done = strcmp(p->cursor, "0") == 0;
    const redisReply *keys = reply->element[1];
    /* one DEL per key: keys of one node may be in different slots */
    for (size_t i = 0; i < keys->elements; i++) {
        const redisReply *k = keys->element[i];
        if (k->type != REDIS_REPLY_STRING)
            continue;
        const char *argv[2] = {"DEL", k->str};
        const size_t lens[2] = {3, k->len};
        p->pending++;
        tp_redis_cmdv(p->r, on_del, p, 2, argv, lens);
    }
    if (p->pending > 0)
        return;
    if (p->scan_done)
        finish(p);
    else
        scan_next(p);
}

static void scan_next(tp_redis_purge_t *p)
{
    const char *argv[6] = {"SCAN", p->cursor, "MATCH", p->pattern, "COUNT", "1000"};
    tp_redis_cmdv(p->r, on_scan, p, 6, argv, NULL);
}

tp_redis_purge_t *tp_redis_purge(tp_redis_t *r, const char *pattern, tp_redis_purge_cb cb,
                                 void *arg)
{
    tp_redis_purge_t *p = tp_calloc(1, sizeof(*p));
    p->r = r;
    p->pattern = tp_strdup(pattern);
    p->cb = cb;
    p->arg = arg;
    strcpy(p->cursor, "0");
    scan_next(p);
    return p;
}

void tp_redis_purge_detach(tp_redis_purge_t *p)
{
    p->cb = NULL;
}
