/*
 * shm/tp_shm_session.h: the node's session cache, shared by all workers
 * (Tyk's local_session_cache, made one per node instead of one per
 * process): a key one worker read from Redis is a hit for the others.
 *
 * Used by: workers look up and insert sessions, and evict the ones a REST
 * call changes; the master evicts what KeySpaceUpdateNotification names.
 * The region is mapped by the master before it forks.
 *
 * Layout: a fixed table of fixed-size entries (turnpike.session_cache_size
 * bytes in all, turnpike.session_cache_entry bytes each), looked up by a
 * SHA-256 of the org and the key as presented, linear probing over a few
 * neighbours; an insert takes a free or expired neighbour, else the one
 * closest to expiry, so memory is bounded and the cache evicts by itself.
 * Raw keys are never stored: an entry holds the identity digest, the
 * digest of the Redis key it came from (what cluster notifications name),
 * the Redis key itself and the session JSON as read.
 *
 * Locking: one sequence counter per entry, no lock a process can die
 * holding for good. Writers make the counter odd to write and even when
 * done; readers copy an entry and retry or miss if the counter moved. A
 * writer that finds an entry odd for longer than a second, or whose writer
 * is dead, takes it over. Readers never wait; a writer that cannot take an
 * entry at once skips caching (the cache is an optimisation).
 */
#ifndef TP_SHM_SESSION_H
#define TP_SHM_SESSION_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "tp_buf.h"

typedef struct tp_scache_s tp_scache_t;

/* Maps the cache: <bytes> in all, <entry_bytes> per entry; <name> names
 * its settings in errors (turnpike.<name>_cache_size). NULL with a reason
 * in <err>. Master, before fork.
 *
 * The response cache's shared-memory front (worker/tp_cache.c) is another
 * table of the same kind: id the digest of the Redis key, store the digest
 * of the API id (a purge evicts an API's entries), the Redis key, and the
 * response as stored. */
tp_scache_t *tp_scache_create(size_t bytes, size_t entry_bytes, const char *name, char *err,
                              size_t errlen);

/* Looks up <id>. On a hit (1), copies the Redis key name into <rkey> and
 * the session JSON into <json> (both NUL-terminated), and sets *slot and
 * *version for tp_scache_left. 0 on a miss or an expired entry. */
int tp_scache_get(tp_scache_t *c, const uint8_t id[32], int64_t now_ms, tp_buf_t *rkey,
                  tp_buf_t *json, uint32_t *slot, uint64_t *version);

/* Milliseconds the entry read earlier (slot, version) has left; 0 once it
 * changed or expired. */
int64_t tp_scache_left(tp_scache_t *c, uint32_t slot, uint64_t version, int64_t now_ms);

/* A counter every change of an entry's version moves (evictions and
 * writes of a different session; not refreshes that only move an expiry).
 * While it stands still, an entry checked with tp_scache_left is unchanged
 * and lives at least as long as it said: a reader may skip the check. */
uint64_t tp_scache_changes(tp_scache_t *c);

/* The eviction counter: read it before asking Redis for a session, and
 * pass it to tp_scache_put, which then refuses a session that an eviction
 * may have made stale while it was being read. */
uint64_t tp_scache_epoch(tp_scache_t *c);

/* Stores a session: <id> as for get, <store> the SHA-256 of the storage
 * hash (the part of the Redis key after "apikey-"), <rkey> the Redis key,
 * <json> the session. When the entry for <id> already holds this very
 * session (a refresh), only its expiry moves and its version stays, so
 * the workers' parsed copies stay valid. Returns 0, or -1 when it does not
 * fit, the entry is busy or an eviction came after <epoch> (nothing
 * cached). */
int tp_scache_put(tp_scache_t *c, uint64_t epoch, const uint8_t id[32], const uint8_t store[32],
                  const char *rkey, const char *json, size_t json_len, int64_t expires_ms);

/* Evicts every entry whose storage-hash digest is <store>; returns how
 * many. Used for REST writes and KeySpaceUpdateNotification. */
int tp_scache_evict_store(tp_scache_t *c, const uint8_t store[32]);

/* Entries in use and capacity, for show info. */
void tp_scache_stats(tp_scache_t *c, int64_t now_ms, size_t *used, size_t *capacity);

/* SHA-256 helpers for the digests above. */
void tp_scache_digest(const char *a, size_t alen, const char *b, size_t blen, uint8_t out[32]);

#endif
