/*
 * worker/tp_respond.h: responses the gateway makes itself (Tyk's error
 * bodies and templates, mock replies, built-in endpoints).
 *
 * Used by: worker processes, by the stages and the REST API.
 */
#ifndef TP_RESPOND_H
#define TP_RESPOND_H

#include "tp_req.h"

/* tp_respond.c: responses made by the gateway itself */
void tp_respond(tp_req_t *req, int status, const char *content_type, const char *body,
                size_t body_len, const char *extra_headers);
/* Sends the whole response the caller wrote into req->out (head and
 * body), with status <status>; <close>: the connection closes after it
 * (decided with tp_req_will_close before the head was written). */
void tp_respond_send(tp_req_t *req, int status, int close);
/* Tyk's error body (templates/error.json, or error.xml when the request is
 * XML; error_<status>.* in template_path override them). */
void tp_respond_error(tp_req_t *req, int status, const char *message);
/* ... with more header lines ("Name: value\r\n" each), or NULL. */
void tp_respond_error_with(tp_req_t *req, int status, const char *message, const char *headers);
/* Tyk's 500 for a request it could not proxy: "There was a problem
 * proxying the request" (a failed stage, an API that did not compile). */
void tp_respond_failed(tp_req_t *req);
/* Auth errors (counted as key failures); override_messages may change
 * the token-auth ones. */
enum {
    TP_AUTH_FIELD_MISSING,
    TP_AUTH_KEY_NOT_FOUND,
    TP_AUTH_NOT_AUTHORIZED,     /* JWT */
    TP_AUTH_BASIC_MISSING,      /* basic auth, with WWW-Authenticate */
    TP_AUTH_BASIC_UNAUTHORISED, /* ... */
    TP_AUTH_HMAC_INVALID,       /* HMAC signatures, every failure */
    TP_AUTH_NMSG
};
void tp_respond_auth_error(tp_req_t *req, int which);
/* Any other refused credential: Tyk's error body, counted as a key failure. */
void tp_respond_auth_failure(tp_req_t *req, int status, const char *message);
/* Loads the templates from template_path and the overrides (worker start). */
void tp_errtpl_load(tp_worker_t *w);
int tp_req_will_close(const tp_req_t *req);
/* A plain-text error for a request that could not be parsed; always closes. */
void tp_respond_bad_request(tp_conn_t *c, int status);

#endif
