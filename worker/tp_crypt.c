/*
 * worker/tp_crypt.c: bcrypt on libuv's thread pool (see tp_crypt.h), with
 * the system's libcrypt (libxcrypt: $2a$/$2b$/$2y$).
 */
#include <crypt.h>
#include <stdlib.h>
#include <string.h>

#include "tp_ct.h"
#include "tp_err.h"
#include "tp_log.h"
#include "tp_crypt.h"

struct tp_crypt_job_s {
    uv_work_t work;
    tp_crypt_cb cb;
    void *arg; /* NULL once dropped */
    int hashing, ok;
    char *stored, *password;
    char out[CRYPT_OUTPUT_SIZE];
};

static void run(uv_work_t *w)
{
    tp_crypt_job_t *j = w->data;
    struct crypt_data *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return;
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    const char *setting = j->stored;
    if (j->hashing)
        setting = crypt_gensalt_rn("$2a$", 10, NULL, 0, salt, sizeof(salt));
    const char *h = setting != NULL ? crypt_r(j->password, setting, d) : NULL;
    if (h != NULL && h[0] != '*') {
        if (j->hashing) {
            strncpy(j->out, h, sizeof(j->out) - 1);
            j->ok = 1;
        } else {
            j->ok = tp_ct_equal(h, strlen(h), j->stored, strlen(j->stored));
        }
    }
    explicit_bzero(d, sizeof(*d));
    free(d);
}

static void done(uv_work_t *w, int status)
{
    tp_crypt_job_t *j = w->data;
    if (j->arg != NULL)
        j->cb(j->arg, status == 0 && j->ok, j->out);
    explicit_bzero(j->password, strlen(j->password));
    free(j->password);
    free(j->stored);
    free(j);
}

static tp_crypt_job_t *start(uv_loop_t *loop, const char *stored, const char *password, int hashing,
                             tp_crypt_cb cb, void *arg)
{
    tp_crypt_job_t *j = tp_calloc(1, sizeof(*j));
    j->work.data = j;
    j->cb = cb;
    j->arg = arg;
    j->hashing = hashing;
    j->stored = tp_strdup(stored != NULL ? stored : "");
    j->password = tp_strdup(password);
    int rc = uv_queue_work(loop, &j->work, run, done);
    if (rc != 0) {
        tp_log_error("bcrypt: cannot queue work: %s", uv_strerror(rc));
        j->arg = NULL;
        done(&j->work, rc);
        return NULL;
    }
    return j;
}

tp_crypt_job_t *tp_crypt_check(uv_loop_t *loop, const char *stored, const char *password,
                               tp_crypt_cb cb, void *arg)
{
    return start(loop, stored, password, 0, cb, arg);
}

tp_crypt_job_t *tp_crypt_hash(uv_loop_t *loop, const char *password, tp_crypt_cb cb, void *arg)
{
    return start(loop, NULL, password, 1, cb, arg);
}

void tp_crypt_drop(tp_crypt_job_t *job)
{
    if (job != NULL)
        job->arg = NULL;
}
