/*
 * worker/tp_route.h: which API serves a request, as Tyk's router decides.
 *
 * Used by: the master builds the table once per configuration (so -t
 * reports collisions) and workers inherit it; matching is read-only.
 * No event loop, no locking.
 *
 * Each API owns two prefix routes, "/<api_id>/" and its listen_path.
 * APIs are ordered with custom-domain APIs first, then by listen path
 * length, longest first ({name} segments count only their slashes); the
 * first route whose host and path prefix match wins. Matching is a literal
 * prefix test ("/foo" matches "/foobar" unless enable_strict_routes).
 */
#ifndef TP_ROUTE_H
#define TP_ROUTE_H

#include <stddef.h>

#include "tp_buf.h"
#include "tp_conf.h"

typedef struct tp_route_s {
    char *prefix;
    size_t len;
    int templated;      /* has {name} segments */
    const char *domain; /* host this route is bound to, NULL for any */
    tp_api_t *api;
    int by_api_id; /* the "/<api_id>/" route */
} tp_route_t;

typedef struct tp_router_s {
    tp_route_t *v;
    size_t n;
    int strict;
} tp_router_t;

/* Builds the table for <apis> (borrowed: they must outlive the router).
 * Listen-path collisions on one domain are resolved as Tyk does, by
 * appending "-<api_id>" to the later API's listen path (with a warning). */
void tp_router_build(tp_router_t *r, tp_apis_t *apis, const tp_conf_t *conf);
void tp_router_free(tp_router_t *r);

/* Finds the route for <host> (the Host header, port allowed) and the
 * decoded request <path>. Sets *matched to the number of path bytes the
 * route prefix covered. Returns NULL when nothing matches (404). */
const tp_route_t *tp_router_match(const tp_router_t *r, tp_str_t host, tp_str_t path,
                                  size_t *matched);

/* Matches one prefix (with {name} segments) against <path>; returns the
 * number of bytes matched or -1. Exposed for tests. */
long tp_route_prefix_match(const char *prefix, size_t plen, tp_str_t path, int templated,
                           int strict);

#endif
