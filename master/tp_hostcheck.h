/*
 * master/tp_hostcheck.h: the node's host checker (Tyk's uptime tests,
 * TYK-COMPAT 10 and 20), run by the master on its own loop: one checker
 * per node, however many workers.
 *
 * Every time_wait seconds it probes each check_list entry of every API
 * (HTTP: up only on status 200, with Connection: close; TCP: connect and
 * the send/expect commands), counts failures as Tyk does, and on the
 * down and up transitions marks the host in shared memory (tp_shm_hosts.c,
 * read by the workers' load balancing), sets or deletes Tyk's
 * host-checker:PollerCheckerInstance:<host> key, and logs HostDown or
 * HostUp. With enable_uptime_analytics every probe is pushed to
 * host-checker:tyk-uptime-analytics in Tyk's msgpack layout.
 *
 * Several nodes: as in Tyk, one node polls (it holds
 * host-checker:PollerActiveInstanceID[.<poller_group>]); the others read
 * the PollerCheckerInstance keys each interval into their shared memory.
 */
#ifndef TP_HOSTCHECK_H
#define TP_HOSTCHECK_H

#include "tp_buf.h"

typedef struct tp_master_s tp_master_t;
typedef struct tp_hostcheck_s tp_hostcheck_t;

/* Takes the check lists of the master's generation (start-up and every
 * reload), keeping the state of checks whose URL stays; starts or stops
 * the checker as uptime_tests.disable says. */
void tp_hostcheck_sync(tp_master_t *m);

/* Stops probing (shutdown). */
void tp_hostcheck_stop(tp_master_t *m);

/* `show hosts`: one line per check. */
void tp_hostcheck_show(const tp_master_t *m, tp_buf_t *out);

/* Prometheus lines: turnpike_host_up{host,url} and check counters. */
void tp_hostcheck_metrics(const tp_master_t *m, tp_buf_t *out);

#endif
