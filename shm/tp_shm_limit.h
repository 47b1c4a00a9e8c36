/*
 * shm/tp_shm_limit.h: the node's rate-limit counters, shared by all
 * workers (the local tier of TYK-COMPAT 6.2's DRL role), the number of
 * live gateway nodes, and what this node last saw of its Redis-held
 * limits and quotas, for the admin socket's `show limits`.
 *
 * Used by: workers decide local limits here and note Redis results; the
 * master reads entries for `show limits`. The region is mapped by the
 * master before it forks, so every worker sees the same table.
 *
 * Algorithm: GCRA (the generic cell rate algorithm). A limit of <rate>
 * requests per <per> seconds has an emission interval T = per / rate and
 * a burst tolerance of one whole window: the entry holds one number, the
 * theoretical arrival time (TAT). A request at time t is admitted when
 * max(TAT, t) + T - t <= per, and then TAT becomes max(TAT, t) + T; a
 * refused request changes nothing, so a client that slows down recovers.
 * Over any interval of length L at most rate + L * rate / per requests
 * pass: a burst of <rate>, then one every T.
 *
 * Locking: none. An entry is claimed by a compare-and-swap of its key
 * hash and decided by a compare-and-swap of its TAT, so a worker that dies
 * at any point leaves no lock behind, and concurrent workers admit exactly
 * what one would. The table is fixed (turnpike.limit_counters entries):
 * a key lives in one of a few neighbouring slots; when all are taken, an
 * entry without state is reused first (a note of a Redis answer, or a
 * counter whose TAT has passed: reusing it loses nothing), else the one
 * idle longest.
 */
#ifndef TP_SHM_LIMIT_H
#define TP_SHM_LIMIT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "tp_buf.h"

typedef struct tp_limits_s tp_limits_t;

/* What a limit entry is, for `show limits`. */
enum {
    TP_LIM_LOCAL = 1, /* decided here (GCRA in this table) */
    TP_LIM_EXACT,     /* Turnpike's Redis GCRA: last reply noted */
    TP_LIM_ROLLING,   /* Tyk's sliding log (enable_redis_rolling_limiter, sentinel, DRL fallback) */
    TP_LIM_FIXED,     /* Tyk's fixed window */
    TP_LIM_QUOTA,     /* a quota counter: last reply noted */
    TP_LIM_LEASE,     /* a quota counted in Redis, part of it leased to this node */
};

/* One decision's result. */
typedef struct tp_limit_res_s {
    int64_t limit;     /* requests per window (the node's share in the local tier) */
    int64_t remaining; /* requests left now, never negative */
    int64_t reset_us;  /* until the next request is admitted (refused) or the
                        * window is whole again (admitted) */
} tp_limit_res_t;

/* Maps a table of <entries> (rounded up to a power of two, at least 64).
 * Returns NULL with a reason. Master, before fork. */
tp_limits_t *tp_limits_create(size_t entries, char *err, size_t errlen);

/* Decides one request for <key> against <rate> per <per_ns> nanoseconds
 * at monotonic time <now_ns>. Returns 1 admitted (and counted), 0 refused
 * (nothing counted). */
int tp_limits_take(tp_limits_t *t, const char *key, size_t klen, double rate, int64_t per_ns,
                   int64_t now_ns, tp_limit_res_t *res);

/* Records what Redis answered for <key> (a TP_LIM_* kind), for operators.
 * <now_ns> monotonic. */
void tp_limits_note(tp_limits_t *t, const char *key, size_t klen, int kind, int64_t limit,
                    int64_t count, int64_t remaining, int64_t reset_us, int64_t now_ns);

/* Quota leases (the local tier's quotas). A node takes a large quota from
 * Redis a slice at a time (INCRBY of the slice) and hands it out here, so
 * most requests need no round trip; a slice is never more than the quota
 * has left, so the quota is never exceeded, and what a node leased but did
 * not use when the window ends is counted as used (at most one slice per
 * node).
 *
 * Takes one request from the lease of <key> (a quota of <max>). Returns 1
 * (res: remaining, reset) or 0 when the lease is used up or its window
 * has ended. <now_ns> monotonic. */
int tp_limits_lease_take(tp_limits_t *t, const char *key, size_t klen, int64_t max, int64_t now_ns,
                         tp_limit_res_t *res);

/* Adds <granted> requests just leased: the counter is at <count> and its
 * window ends at monotonic <end_ns>. */
void tp_limits_lease_add(tp_limits_t *t, const char *key, size_t klen, int64_t max, int64_t granted,
                         int64_t count, int64_t end_ns, int64_t now_ns);

/* Live gateway nodes (at least 1), as the last announcement counted them. */
uint32_t tp_limits_nodes(const tp_limits_t *t);
void tp_limits_set_nodes(tp_limits_t *t, uint32_t n);

/* This node's identity in the announcements. */
const char *tp_limits_node_id(const tp_limits_t *t);

/* Appends one line per entry whose key contains <needle> to <out>, and
 * returns how many. <now_ns> monotonic. */
size_t tp_limits_show(tp_limits_t *t, const char *needle, int64_t now_ns, tp_buf_t *out);

#endif
