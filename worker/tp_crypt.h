/*
 * worker/tp_crypt.h: bcrypt off the event loop. A bcrypt of cost 10 takes
 * ~55 ms of CPU here; run on the loop it would stall every connection of
 * the worker, so it runs on libuv's thread pool and answers on the loop.
 *
 * Used by: worker processes (basic auth checks, /tyk/keys password hashing).
 * A job's callback runs on the loop thread, once, unless the job was
 * dropped first (tp_crypt_drop): then it never runs.
 */
#ifndef TP_CRYPT_H
#define TP_CRYPT_H

#include <uv.h>

typedef struct tp_crypt_job_s tp_crypt_job_t;

/* <ok>: the password matched (check), or the hash was made (hash, in <out>,
 * valid during the call). */
typedef void (*tp_crypt_cb)(void *arg, int ok, const char *out);

/* Does <password> match the bcrypt hash <stored>? NULL when the work could
 * not be queued (then <cb> is never called). */
tp_crypt_job_t *tp_crypt_check(uv_loop_t *loop, const char *stored, const char *password,
                               tp_crypt_cb cb, void *arg);
/* A bcrypt hash of <password> ("$2a$10$..." as Go's bcrypt writes). */
tp_crypt_job_t *tp_crypt_hash(uv_loop_t *loop, const char *password, tp_crypt_cb cb, void *arg);
/* Its caller went away: the work finishes, the callback is not called. */
void tp_crypt_drop(tp_crypt_job_t *job);

#endif
