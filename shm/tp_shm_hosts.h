/*
 * shm/tp_shm_hosts.h: which upstream hosts the node's host checker found
 * down (uptime tests, TYK-COMPAT 10 and 20), for the workers' load
 * balancing (proxy.check_host_against_uptime_tests).
 *
 * Used by: the master's host checker (master/tp_hostcheck.c) writes; the
 * workers read, once per target tried. Hosts are named as Tyk keys them:
 * host[:port] exactly as written in the URL (the check URL's and the
 * target's must match). The region is mapped by the master before it forks.
 *
 * Locking: none; one writer. An entry's name is written before its key is
 * published (release), and a name once placed is never moved, so a reader
 * finds it or misses it (a host not yet known is up).
 */
#ifndef TP_SHM_HOSTS_H
#define TP_SHM_HOSTS_H

#include <stddef.h>

typedef struct tp_hosts_s tp_hosts_t;

/* Maps a table for <entries> hosts. NULL with a reason. Master, before fork. */
tp_hosts_t *tp_hosts_create(size_t entries, char *err, size_t errlen);

/* Marks <host> (n bytes) down or up. Returns -1 when the table is full.
 * Master. */
int tp_hosts_set(tp_hosts_t *t, const char *host, size_t n, int down);

/* Is <host> down? */
int tp_hosts_down(const tp_hosts_t *t, const char *host, size_t n);

/* How many hosts are down now (metrics, `show hosts`). */
unsigned tp_hosts_ndown(const tp_hosts_t *t);

#endif
