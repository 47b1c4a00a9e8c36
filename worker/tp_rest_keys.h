/*
 * worker/tp_rest_keys.h: what the parts of /tyk/keys share (internal to
 * tp_rest_keys.c, tp_rest_keys_job.c and tp_rest_keys_list.c): a job is one
 * REST request on its way through a few rounds of Redis commands.
 */
#ifndef TP_REST_KEYS_H
#define TP_REST_KEYS_H

#include "tp_worker.h"

#define MAX_CMDS 64
#define MAX_CAND 8

enum {
    K_CREATE = TP_REST_OP_KEYS, /* POST /tyk/keys and /tyk/keys/{id} */
    K_UPDATE,                   /* PUT /tyk/keys/{id} */
    K_GENERATE,                 /* POST /tyk/keys/create */
    K_PREVIEW,                  /* POST /tyk/keys/preview */
    K_POLICY,                   /* POST /tyk/keys/policy/{hash} */
    K_GET,
    K_DELETE,
    K_LIST,
};

typedef struct kjob_s kjob_t;
typedef void (*kstep_cb)(kjob_t *j);

typedef struct kslot_s {
    kjob_t *j;
    int i;
} kslot_t;

struct kjob_s {
    tp_req_t *req;
    int op;
    int hashed, suppress_reset;
    char *key;    /* the key in the path (or generated) */
    char *org;    /* org_id from the query (lookups) */
    char *api_id; /* api_id from the query */
    char *filter; /* listing */
    cJSON *sess;  /* the session being written or shown */
    cJSON *found; /* the stored session found by find() */
    char *token;  /* the key name it was found under (NULL for a hashed lookup) */
    char *rkey;   /* its Redis key */
    char *cand_tok[MAX_CAND];
    char *cand_rkey[MAX_CAND];
    int ncand;
    /* a round of commands */
    kstep_cb next;
    int n, pending, issuing, errors;
    kslot_t slots[MAX_CMDS];
    tp_rcmd_t *cmds[MAX_CMDS];
    redisReply *replies[MAX_CMDS];
    char err[256];
    /* listing */
    tp_buf_t scan_pattern[2];
    int scan_phase;
    char *cursor;
    char **names;
    size_t nnames;
    size_t fpos, fkeep;           /* listing by api_id: names looked at, names kept */
    int del_from, del_to;         /* delete: the round's DELs of the session */
    struct tp_crypt_job_s *crypt; /* a basic-auth password being hashed */
    kstep_cb after_crypt;         /* ... and what follows */
};

static inline const tp_conf_t *kjob_conf(const kjob_t *j)
{
    return j->req->conn->w->conf;
}

/* Frees <j> and what it holds (commands still pending are cancelled). */
void kjob_free(kjob_t *j);
/* A round: kjob_round_begin, any number of kjob_cmd, kjob_round_end;
 * <next> runs once every command of the round has its answer (replies in
 * j->replies, failures counted in j->errors with the last in j->err). */
void kjob_round_begin(kjob_t *j, kstep_cb next);
void kjob_cmd(kjob_t *j, int argc, const char **argv);
void kjob_round_end(kjob_t *j);
/* Answers and frees the job. */
void kjob_error(kjob_t *j, int status, const char *msg);
void kjob_json(kjob_t *j, int status, const char *json);
/* {"key":..,"status":"ok","action":..[,"key_hash":..]} */
void kjob_action(kjob_t *j, const char *key, const char *action, const char *key_hash);
/* After a round: 1 (and a 500 answered) if a command failed. */
int kjob_redis_failed(kjob_t *j);

/* GET /tyk/keys once j->scan_pattern is set: SCAN, filter, answer. */
void kjob_list(kjob_t *j);

#endif
