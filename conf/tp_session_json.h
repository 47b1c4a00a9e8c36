/*
 * conf/tp_session_json.h: Tyk's SessionState JSON as Turnpike writes it,
 * and the Redis lifetime of a session (TYK-COMPAT 4.1, 4.4).
 *
 * Used by: workers, for the Gateway REST API's key handlers. Pure
 * functions on cJSON trees.
 *
 * Turnpike writes sessions in the full form of Tyk 5.x LTS (5.3, 5.8):
 * every field in Go's struct order, zero values included, so that any Tyk
 * node reads them, and clients built for the LTS lines see what they know.
 * Fields Turnpike does not know are kept, after the known ones. Both forms
 * are read (see tp_policy_apply.h).
 */
#ifndef TP_SESSION_JSON_H
#define TP_SESSION_JSON_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "tp_conf.h"

/* Rewrites <session> in place into the full form. */
void tp_session_full(cJSON *session);

/* The session's SessionState.Lifetime for one API whose session_lifetime is
 * <api_lifetime> (seconds) and which respects key expiry if
 * <api_respects_expiry>: 0 or -1 mean no TTL. */
int64_t tp_session_lifetime(const cJSON *session, const tp_conf_t *conf, int64_t api_lifetime,
                            int api_respects_expiry, int64_t now);

/* A Go time.Time as Tyk marshals time.Now(): RFC 3339 with nanoseconds,
 * in UTC ("2026-11-26T15:11:47.565123456Z"). */
void tp_session_time_now(char out[40]);

/* An integer member, as Go would read it (0 when absent or not a number). */
int64_t tp_session_int(const cJSON *obj, const char *key);

#endif
