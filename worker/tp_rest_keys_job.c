/*
 * worker/tp_rest_keys_job.c: the jobs of /tyk/keys: rounds of Redis
 * commands sent together, and the answers. See tp_rest_keys.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_err.h"
#include "tp_json.h"
#include "tp_log.h"
#include "tp_crypt.h"
#include "tp_rest_keys.h"

/* ---- jobs and rounds ------------------------------------------------------------------ */

static void round_clear(kjob_t *j)
{
    for (int i = 0; i < j->n; i++) {
        if (j->cmds[i] != NULL)
            tp_redis_cancel(j->cmds[i]);
        j->cmds[i] = NULL;
        if (j->replies[i] != NULL)
            freeReplyObject(j->replies[i]);
        j->replies[i] = NULL;
    }
    j->n = 0;
    j->errors = 0;
}

void kjob_free(kjob_t *j)
{
    tp_crypt_drop(j->crypt);
    round_clear(j);
    free(j->key);
    free(j->org);
    free(j->api_id);
    free(j->filter);
    cJSON_Delete(j->sess);
    cJSON_Delete(j->found);
    free(j->token);
    free(j->rkey);
    for (int i = 0; i < j->ncand; i++) {
        free(j->cand_tok[i]);
        free(j->cand_rkey[i]);
    }
    tp_buf_free(&j->scan_pattern[0]);
    tp_buf_free(&j->scan_pattern[1]);
    free(j->cursor);
    for (size_t i = 0; i < j->nnames; i++)
        free(j->names[i]);
    free(j->names);
    free(j);
}

void tp_rest_keys_release(tp_req_t *req)
{
    if (req->rest_job != NULL) {
        kjob_free(req->rest_job);
        req->rest_job = NULL;
    }
}

/* Deep copy of a reply: hiredis frees its own after the callback. */
static redisReply *reply_copy(const redisReply *r)
{
    redisReply *c = tp_calloc(1, sizeof(*c));
    c->type = r->type;
    c->integer = r->integer;
    if (r->str != NULL) {
        c->str = tp_malloc(r->len + 1);
        memcpy(c->str, r->str, r->len);
        c->str[r->len] = '\0';
        c->len = r->len;
    }
    if (r->elements > 0) {
        c->element = tp_calloc(r->elements, sizeof(redisReply *));
        c->elements = r->elements;
        for (size_t i = 0; i < r->elements; i++)
            c->element[i] = reply_copy(r->element[i]);
    }
    return c;
}

static void on_reply(void *arg, const redisReply *rep, const char *err)
{
    kslot_t *s = arg;
    kjob_t *j = s->j;
    j->cmds[s->i] = NULL;
    if (err != NULL || rep->type == REDIS_REPLY_ERROR) {
        j->errors++;
        snprintf(j->err, sizeof(j->err), "%s", err != NULL ? err : rep->str);
    } else {
        j->replies[s->i] = reply_copy(rep);
    }
    if (--j->pending == 0 && !j->issuing)
        j->next(j);
}

/* Sends one command of the current round (argv strings). */
void kjob_cmd(kjob_t *j, int argc, const char **argv)
{
    TP_BUG_ON(j->n >= MAX_CMDS);
    int i = j->n++;
    size_t lens[8];
    for (int k = 0; k < argc; k++)
        lens[k] = strlen(argv[k]);
    j->slots[i] = (kslot_t){j, i};
    j->pending++;
    j->cmds[i] = (tp_rcmd_t *)1;
    tp_rcmd_t *c = tp_redis_cmdv(j->req->conn->w->redis, on_reply, &j->slots[i], argc, argv, lens);
    if (j->cmds[i] != NULL)
        j->cmds[i] = c; /* still waiting */
}

void kjob_round_begin(kjob_t *j, kstep_cb next)
{
    round_clear(j);
    j->next = next;
    j->issuing = 1;
}

void kjob_round_end(kjob_t *j)
{
    j->issuing = 0;
    if (j->pending == 0)
        j->next(j);
}

/* ---- answers ------------------------------------------------------------------------ */

void kjob_error(kjob_t *j, int status, const char *msg)
{
    tp_req_t *req = j->req;
    tp_rest_keys_release(req);
    tp_rest__error(req, status, msg);
}

void kjob_json(kjob_t *j, int status, const char *json)
{
    tp_req_t *req = j->req;
    tp_rest_keys_release(req);
    tp_rest__reply(req, status, json);
}

void kjob_action(kjob_t *j, const char *key, const char *action, const char *key_hash)
{
    tp_buf_t b = {0};
    tp_buf_puts(&b, "{\"key\":\"");
    tp_buf_json_escape(&b, key, strlen(key));
    tp_buf_printf(&b, "\",\"status\":\"ok\",\"action\":\"%s\"", action);
    if (key_hash != NULL && key_hash[0] != '\0') {
        tp_buf_puts(&b, ",\"key_hash\":\"");
        tp_buf_json_escape(&b, key_hash, strlen(key_hash));
        tp_buf_putc(&b, '"');
    }
    tp_buf_putc(&b, '}');
    kjob_json(j, 200, tp_buf_cstr(&b));
    tp_buf_free(&b);
}

int kjob_redis_failed(kjob_t *j)
{
    if (j->errors == 0)
        return 0;
    tp_log_error("REST keys: Redis: %s", j->err);
    kjob_error(j, 500, "Storage error, please try again");
    return 1;
}
