/*
 * worker/tp_rest_keys_list.c: GET /tyk/keys (handleGetAllKeys): SCAN for
 * apikey-<filter>*, optionally keep the keys whose access rights name
 * api_id, answer {"keys": [...]}.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tp_err.h"
#include "tp_json.h"
#include "tp_log.h"
#include "tp_rest_keys.h"

/* ---- listing (handleGetAllKeys) --------------------------------------------------------- */

static void scan_step(kjob_t *j);

void kjob_list(kjob_t *j)
{
    kjob_round_begin(j, scan_step);
    const char *argv[6] = {
        "SCAN", j->cursor, "MATCH", tp_buf_cstr(&j->scan_pattern[j->scan_phase]), "COUNT", "1000"};
    kjob_cmd(j, 6, argv);
    kjob_round_end(j);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list_filter_step(kjob_t *j);
static void list_get_batch(kjob_t *j);

static void scan_step(kjob_t *j)
{
    if (kjob_redis_failed(j))
        return;
    redisReply *r = j->replies[0];
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        kjob_error(j, 500, "Storage error, please try again");
        return;
    }
    const redisReply *keys = r->element[1];
    for (size_t i = 0; i < keys->elements; i++) {
        const char *name = keys->element[i]->str;
        if (name == NULL || strncmp(name, "apikey-", 7) != 0)
            continue;
        name += 7;
        if (strncmp(name, "quota-", 6) == 0 || strncmp(name, "rate-limit-", 11) == 0)
            continue;
        j->names = tp_realloc(j->names, (j->nnames + 1) * sizeof(char *));
        j->names[j->nnames++] = tp_strdup(name);
    }
    free(j->cursor);
    j->cursor = tp_strdup(r->element[0]->str ? r->element[0]->str : "0");
    if (strcmp(j->cursor, "0") != 0) {
        kjob_list(j);
        return;
    }
    if (j->scan_phase == 0 && j->scan_pattern[1].len > 0) {
        j->scan_phase = 1;
        free(j->cursor);
        j->cursor = tp_strdup("0");
        kjob_list(j);
        return;
    }
    if (j->api_id != NULL && j->api_id[0] != '\0') {
        list_get_batch(j);
        return;
    }
    list_filter_step(j);
}

/* Loads the next batch of listed sessions (at most one round of commands),
 * so listing by api_id looks at every key however many there are. */
static void list_get_batch(kjob_t *j)
{
    kjob_round_begin(j, list_filter_step);
    tp_buf_t k = {0};
    for (size_t i = j->fpos; i < j->nnames && j->n < MAX_CMDS; i++) {
        k.len = 0;
        tp_buf_printf(&k, "apikey-%s", j->names[i]);
        const char *get[2] = {"GET", tp_buf_cstr(&k)};
        kjob_cmd(j, 2, get);
    }
    tp_buf_free(&k);
    kjob_round_end(j);
}

static void list_filter_step(kjob_t *j)
{
    if (kjob_redis_failed(j))
        return;
    if (j->api_id != NULL && j->api_id[0] != '\0') {
        /* keep the keys whose access rights name the API; names[] is
         * compacted in place (fkeep <= fpos) */
        for (int r = 0; r < j->n; r++) {
            size_t i = j->fpos++;
            int ok = 0;
            const redisReply *rep = j->replies[r];
            if (rep != NULL && rep->type == REDIS_REPLY_STRING) {
                cJSON *s = cJSON_Parse(rep->str);
                const cJSON *ar = tp_json_get(s, "access_rights");
                int master = ar == NULL || !cJSON_IsObject(ar) || ar->child == NULL;
                ok = (!master && cJSON_GetObjectItemCaseSensitive(ar, j->api_id) != NULL) ||
                     (master && kjob_conf(j)->allow_master_keys);
                cJSON_Delete(s);
            }
            char *name = j->names[i];
            j->names[i] = NULL; /* kjob_free() may run before the last batch */
            if (ok)
                j->names[j->fkeep++] = name;
            else
                free(name);
        }
        if (j->fpos < j->nnames) {
            list_get_batch(j);
            return;
        }
        j->nnames = j->fkeep;
        qsort(j->names, j->nnames, sizeof(char *), name_cmp);
    }
    tp_buf_t b = {0};
    tp_buf_puts(&b, "{\"keys\":[");
    for (size_t i = 0; i < j->nnames; i++) {
        if (i > 0)
            tp_buf_putc(&b, ',');
        tp_buf_putc(&b, '"');
        tp_buf_json_escape(&b, j->names[i], strlen(j->names[i]));
        tp_buf_putc(&b, '"');
    }
    tp_buf_puts(&b, "]}");
    kjob_json(j, 200, tp_buf_cstr(&b));
    tp_buf_free(&b);
}
