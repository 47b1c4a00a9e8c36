/*
 * common/tp_notice.h: Tyk's cluster notifications on tyk.cluster.notifications
 * (TYK-COMPAT 7): {"command","payload","signature","algorithm":5}, signed
 * with hex(sha256(command + payload + node_secret)).
 *
 * Used by: workers to publish (/tyk/reload/group), the master to check.
 */
#ifndef TP_NOTICE_H
#define TP_NOTICE_H

/* Tyk's signature, as 64 lower-case hex digits and a NUL. */
void tp_notice_signature(const char *command, const char *payload, const char *node_secret,
                         char hex[65]);

/* The signed message, as a Tyk node publishes it (the caller frees it). */
char *tp_notice_format(const char *command, const char *payload, const char *node_secret);

#endif
