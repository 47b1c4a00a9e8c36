/*
 * common/tp_redis_conf.h: the settings of a Redis client (tyk.conf's
 * "storage" block, which conf/ parses into this struct), and the string
 * list they use. Kept here so that common/ needs nothing from conf/.
 *
 * Used by: master and workers. Plain data; the owner frees the strings.
 */
#ifndef TP_REDIS_CONF_H
#define TP_REDIS_CONF_H

#include <stddef.h>
#include <stdint.h>

typedef struct tp_strlist_s {
    char **v;
    size_t n;
} tp_strlist_t;

typedef struct tp_redis_conf_s {
    char *type;
    char *host;
    int64_t port;
    char *username;
    char *password;
    int64_t database;
    int64_t max_idle;
    int64_t max_active;
    int64_t timeout;
    int enable_cluster;
    tp_strlist_t addrs;
    tp_strlist_t hosts; /* the deprecated {"host": "port"} map, as "host:port" */
    char *master_name;
    char *sentinel_password;
    int use_ssl;
    int ssl_insecure_skip_verify;
    char *ca_file;
    char *cert_file;
    char *key_file;
    char *tls_min_version;
    char *tls_max_version;
} tp_redis_conf_t;

#endif
